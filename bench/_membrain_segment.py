"""Run MemBrain-seg's own ``segment`` on one tomogram; runs inside MemBrain-seg's virtualenv.

    python _membrain_segment.py TOMO.mrc CKPT OUT_DIR --tta|--no-tta [--window 160]

Calls ``membrain_seg.segmentation.segment.segment`` exactly as its ``membrain segment`` command
does (sliding window 160, overlap 0.5, Gaussian blending, threshold 0), with
``store_probabilities=True`` so the scores can be compared. It writes
``<stem>_<ckpt name>_segmented.mrc`` and ``<stem>_scores.mrc`` into OUT_DIR and prints the
seconds spent in ``segment`` (after the imports) as the last line: ``segment_s=<seconds>``.
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("tomogram")
    p.add_argument("ckpt")
    p.add_argument("out_dir")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, required=True)
    p.add_argument("--window", type=int, default=160)
    args = p.parse_args(argv)
    from membrain_seg.segmentation.segment import segment

    started = time.perf_counter()
    segment(
        args.tomogram,
        args.ckpt,
        args.out_dir,
        store_probabilities=True,
        sw_roi_size=args.window,
        test_time_augmentation=args.tta,
    )
    print(f"segment_s={time.perf_counter() - started:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
