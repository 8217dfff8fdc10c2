"""Throughput of the parse stage against decoding and resizing alone (a benchmark, not a test).

Both runs use the same images, DataLoader, batch size and workers: `decode` only iterates the
loader; `parse` is the stage's own parse_images (decode, model, argmax, PNG writing). When
parse reaches decode's rate, the model is not the bottleneck.

    python benchmarks/parse_throughput.py --images ../shared/data/faces --count 64 --workers 2

Throughput does not depend on the weights' values, so without --weights a randomly initialised
BiSeNet is used (the pretrained file cannot be downloaded everywhere).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from facexlib.parsing.bisenet import BiSeNet

from pipeline.parse.parser import FaceParser, parse_images, parser_inputs


def images_per_second(run, count: int) -> float:
    start = time.perf_counter()
    run()
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, required=True, help="folder of face images (jpg/png)")
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--weights", type=Path, help="BiSeNet state dict; default: random initialisation")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--no-amp", dest="amp", action="store_false")
    args = parser.parse_args()

    paths = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[: args.count]
    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights
        if weights is None:
            weights = Path(tmp) / "random_bisenet.pth"
            torch.save(BiSeNet(num_class=19).state_dict(), weights)
        face_parser = FaceParser(weights, args.size, args.device, args.amp)
        # Warm-up: worker start-up, cudnn autotuning and page cache, so both timed runs start equal.
        warm = paths[: args.batch_size]
        parse_images(
            face_parser, warm, [Path(tmp) / f"warm{i}.png" for i in range(len(warm))], args.batch_size, args.workers
        )

        def decode() -> None:
            pin = face_parser.device.type == "cuda"
            for _ in parser_inputs(paths, args.size, args.batch_size, args.workers, pin):
                pass

        def parse() -> None:
            destinations = [Path(tmp) / "labels" / f"{i}.png" for i in range(len(paths))]
            parse_images(face_parser, paths, destinations, args.batch_size, args.workers)

        decode_rate = images_per_second(decode, len(paths))
        parse_rate = images_per_second(parse, len(paths))
    device = torch.cuda.get_device_name() if face_parser.device.type == "cuda" else f"cpu, {os.cpu_count()} cores"
    print(
        json.dumps(
            {
                "device": device,
                "images": len(paths),
                "size": args.size,
                "batch_size": args.batch_size,
                "workers": args.workers,
                "precision": "fp16" if face_parser.half else "fp32",
                "decode_images_per_s": round(decode_rate, 2),
                "parse_images_per_s": round(parse_rate, 2),
                "parse_over_decode": round(parse_rate / decode_rate, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
