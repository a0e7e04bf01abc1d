"""The in-process SHA-256 of parts arriving through the API, and every way it must give up."""

from __future__ import annotations

import hashlib
import random
import threading

from ingest.hashing import InOrderHashes
from storage.object_store import UploadedPart

PARTS = [bytes([n]) * (1000 + n) for n in range(1, 9)]
WHOLE = b"".join(PARTS)


def stored(count: int = len(PARTS)) -> list[UploadedPart]:
    return [UploadedPart(n, f"etag{n}", len(PARTS[n - 1])) for n in range(1, count + 1)]


def test_parts_in_order_give_the_whole_digest() -> None:
    hashes = InOrderHashes()
    for n, data in enumerate(PARTS, start=1):
        hashes.add("m", n, data, f"etag{n}")
    assert hashes.take("m", stored()) == (len(WHOLE), hashlib.sha256(WHOLE).hexdigest())
    assert hashes.take("m", stored()) is None, "taken once, then forgotten"


def test_parallel_parts_arriving_shuffled_still_hash_in_order() -> None:
    hashes = InOrderHashes()
    order = list(range(1, len(PARTS) + 1))
    random.Random(7).shuffle(order)
    threads = [threading.Thread(target=hashes.add, args=("m", n, PARTS[n - 1], f"etag{n}")) for n in order]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert hashes.take("m", stored()) == (len(WHOLE), hashlib.sha256(WHOLE).hexdigest())


def test_a_gap_that_is_never_filled_is_not_usable() -> None:
    hashes = InOrderHashes()
    hashes.add("m", 1, PARTS[0], "etag1")
    hashes.add("m", 3, PARTS[2], "etag3")  # part 2 went straight to S3
    assert hashes.take("m", stored(3)) is None


def test_a_gap_that_outlasts_the_wait_gives_up() -> None:
    hashes = InOrderHashes(max_parked_bytes=2500, max_wait_s=0.2)
    for n in (2, 3, 4):  # 1002 + 1003 fit; part 4 waits for part 1, which comes too late
        hashes.add("m", n, PARTS[n - 1], f"etag{n}")
    hashes.add("m", 1, PARTS[0], "etag1")
    assert hashes.take("m", stored(4)) is None


def test_a_part_that_does_not_fit_waits_for_the_gap_to_close() -> None:
    hashes = InOrderHashes(max_parked_bytes=2500, max_wait_s=30)
    for n in (2, 3):
        hashes.add("m", n, PARTS[n - 1], f"etag{n}")
    waiting = threading.Thread(target=hashes.add, args=("m", 4, PARTS[3], "etag4"))
    waiting.start()
    waiting.join(timeout=0.3)
    assert waiting.is_alive(), "part 4 must wait: the parking space is full"
    hashes.add("m", 1, PARTS[0], "etag1")
    waiting.join(timeout=5)
    assert not waiting.is_alive()
    whole = b"".join(PARTS[:4])
    assert hashes.take("m", stored(4)) == (len(whole), hashlib.sha256(whole).hexdigest())


def test_a_part_sent_twice_gives_up() -> None:
    hashes = InOrderHashes()
    hashes.add("m", 1, PARTS[0], "etag1")
    hashes.add("m", 1, b"different bytes", "etag1b")
    assert hashes.take("m", stored(1)) is None


def test_parts_storage_assembled_differently_give_up() -> None:
    hashes = InOrderHashes()
    hashes.add("m", 1, PARTS[0], "etag1")
    hashes.add("m", 2, PARTS[1], "etag2")
    replaced = [UploadedPart(1, "etag1", 1001), UploadedPart(2, "replaced-by-presigned-put", 1002)]
    assert hashes.take("m", replaced) is None
    assert hashes.take("unknown", stored()) is None


def test_an_upload_whose_client_vanished_behind_a_gap_is_forgotten_with_its_parked_parts() -> None:
    now = [0.0]
    hashes = InOrderHashes(max_idle_s=600, clock=lambda: now[0])
    hashes.add("m", 1, PARTS[0], "etag1")
    hashes.add("m", 3, PARTS[2], "etag3")  # part 2 never comes
    assert hashes.parked_bytes == len(PARTS[2])
    now[0] = 601.0
    hashes.add("other", 1, PARTS[0], "etag1")  # any later part sweeps idle uploads
    assert hashes.parked_bytes == 0
    assert hashes.take("m", stored(3)) is None
    assert hashes.take("other", stored(1)) == (len(PARTS[0]), hashlib.sha256(PARTS[0]).hexdigest())


def test_parked_parts_are_capped_across_uploads() -> None:
    hashes = InOrderHashes(max_parked_bytes=2500, max_total_parked_bytes=2100)
    for media in ("a", "b", "c"):  # 1002 bytes parked each: the third would take the process past 2100
        hashes.add(media, 2, PARTS[1], "etag2")
    assert hashes.parked_bytes == 2 * len(PARTS[1])
    for media in ("a", "b", "c"):
        hashes.add(media, 1, PARTS[0], "etag1")
    whole = PARTS[0] + PARTS[1]
    assert hashes.take("a", stored(2)) == hashes.take("b", stored(2)) == (len(whole), hashlib.sha256(whole).hexdigest())
    assert hashes.take("c", stored(2)) is None, "c gave up: complete reads its object instead"
