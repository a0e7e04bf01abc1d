"""Model files converted from the pinned MediaPipe wheel, with their manifest."""
