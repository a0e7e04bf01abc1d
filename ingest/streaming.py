"""The rules of a streaming file: one uploaded while it is recorded, its size and SHA-256 known only at the end.

A browser recorder sends each part as the recording produces it, so the server fixes the part size at
registration (`part_size`, grown like a declared file's so the media limit fits in 10,000 parts) and every part
is at most that. Each part carries its SHA-256 (`X-Part-SHA256`), and a part number is bound to the bytes it
first arrived with: a replay of the same bytes is harmless, other bytes under the same number are refused
(`part_conflict`). At complete the client sends the file's size and SHA-256 (`CompleteRequest`); the parts must
then run 1..n without a gap, every one of `part_size` bytes but the last. Pure checks, raising `IngestError`.
"""

from __future__ import annotations

from collections.abc import Iterable

from core.tables import Media
from core.vocabulary import MediaState
from ingest.schemas import CompleteRequest, IngestError, PartOut

MAX_PARTS = 10_000
SHOWN_PARTS = 20  # part numbers listed in a refusal, at most


def _shown(numbers: list[int]) -> list[int | str]:
    return [*numbers[:SHOWN_PARTS], "..."] if len(numbers) > SHOWN_PARTS else list(numbers)


def missing_below_highest(received: Iterable[int]) -> list[int]:
    """The part numbers not received below the highest one that was: what a resuming recorder must send again."""
    have = set(received)
    return [n for n in range(1, max(have, default=0)) if n not in have]


def check_streaming_part(media: Media, part_number: int, size: int | None, limit_bytes: int) -> None:
    """Refuse a part number out of 1..10000, one past the media limit, or (`size` known) a part that is empty or
    longer than `part_size`. The last part's shortness is only known, and checked, at complete."""
    if not 1 <= part_number <= MAX_PARTS:
        raise IngestError(
            422,
            "part_number_out_of_range",
            f"{media.kind} takes parts 1..{MAX_PARTS} of at most {media.part_size} bytes; got part {part_number}",
        )
    start = (part_number - 1) * media.part_size
    if start + (size or 1) > limit_bytes:
        raise IngestError(
            413,
            "media_too_large",
            f"part {part_number} of {media.kind} would take it past the limit of {limit_bytes} bytes",
            {"kind": media.kind, "limit_bytes": limit_bytes},
        )
    if size is not None and not 1 <= size <= media.part_size:
        raise IngestError(
            422,
            "part_size_invalid",
            f"part {part_number} of {media.kind} must be 1 to {media.part_size} bytes, got {size}",
            {"expected_bytes": media.part_size, "received_bytes": size},
        )


def part_checksum_required(kind: str, part_number: int) -> IngestError:
    return IngestError(
        422,
        "part_checksum_required",
        f"part {part_number} of {kind} is part of a streaming upload: send its hex SHA-256 in X-Part-SHA256",
    )


def check_final_declaration(media: Media, final: CompleteRequest | None) -> None:
    """Refuse a complete of a streaming file without the file's size and SHA-256, and one whose values differ
    from those already declared (at registration, or by an earlier complete of a streaming file)."""
    if media.streaming and final is None:
        raise IngestError(
            422,
            "final_checksum_required",
            f"{media.kind} was uploaded while recorded: send the whole file's size and SHA-256 to complete it, "
            'as {"size_bytes": ..., "sha256": "..."}',
        )
    if final is None or media.declared_size is None:
        return
    if media.streaming and media.state == MediaState.PENDING:
        return  # an earlier complete that failed before verifying: this one's values replace its
    if (final.size_bytes, final.sha256) != (media.declared_size, media.declared_sha256):
        raise IngestError(
            422,
            "declaration_mismatch",
            f"complete says {final.size_bytes} bytes with SHA-256 {final.sha256}, but {media.kind} was declared "
            f"with {media.declared_size} bytes and SHA-256 {media.declared_sha256}: send the declared values, or "
            "no body",
            {"size_bytes": media.declared_size, "sha256": media.declared_sha256},
        )


def check_streaming_parts(media: Media, stored: list[PartOut]) -> int:
    """The stored parts' total size; refuses (422) a gap below the highest part (`parts_missing`) and a part other
    than the last that is not `part_size` bytes (`part_size_invalid`)."""
    sizes = {p.part_number: p.size for p in stored}
    last = max(sizes, default=0)
    missing = [n for n in range(1, max(last, 1) + 1) if n not in sizes]
    if missing:
        raise IngestError(
            422,
            "parts_missing",
            f"{media.kind} has no part {', '.join(map(str, missing[:SHOWN_PARTS]))}"
            f"{' ...' if len(missing) > SHOWN_PARTS else ''}: upload them, then complete again",
            {"missing": _shown(missing)},
        )
    wrong = {n: size for n, size in sizes.items() if (n < last and size != media.part_size) or size > media.part_size}
    if wrong:
        raise IngestError(
            422,
            "part_size_invalid",
            f"{media.kind} parts {sorted(wrong)} are not {media.part_size} bytes, which every part but the last "
            "must be; stored parts cannot be replaced: register a new session and upload the recording again",
            {"parts": {str(n): s for n, s in sorted(wrong.items())}},
        )
    return sum(sizes.values())
