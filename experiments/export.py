"""Export a trained student to a standalone file and check it against the eager model.

    python -m experiments.export runs/cora-transductive-vqgraph-gcn-s0/student.pt \
        [--out student.pt2] [--format torch_export|onnx]

The exported model takes float32 features [B, F] (any B) and returns ``(probs, labels, codes)``;
it needs torch alone (``torch.export.load(path).module()``) or an ONNX runtime. Before
reporting success the export is run on random features and compared with the eager student.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from vqgraph.errors import VQGraphError
from vqgraph.serving import EXPORT_FORMATS, Predictor, load_exported


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.export", description=__doc__.splitlines()[0])
    parser.add_argument("student", type=Path, help="student artifact (student.pt from experiments.run)")
    parser.add_argument("--out", type=Path, default=None, help="default: beside the artifact, .pt2 or .onnx")
    parser.add_argument("--format", default="torch_export", choices=EXPORT_FORMATS)
    args = parser.parse_args(argv)
    out = args.out or args.student.with_suffix(".onnx" if args.format == "onnx" else ".pt2")
    if out.is_dir():  # a traceback after the export before
        parser.error(f"--out {out} is a folder: give the exported file's path, e.g. {out / 'student.pt2'}")
    if out.resolve() == args.student.resolve():  # the student was replaced by its export, silently, before
        parser.error(f"--out {out} is the student artifact itself: the export would replace it; choose another path")
    try:
        predictor = Predictor.load(args.student)
    except (VQGraphError, FileNotFoundError) as err:  # a damaged or missing artifact: one line, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 1
    predictor.export(out, format=args.format)
    x = torch.rand(257, predictor.in_channels)
    eager = predictor.predict(x)
    if args.format == "onnx":
        import onnxruntime

        probs, labels, codes = onnxruntime.InferenceSession(str(out)).run(None, {"features": x.numpy()})
        probs, labels, codes = torch.from_numpy(probs), torch.from_numpy(labels), torch.from_numpy(codes)
    else:
        probs, labels, codes = load_exported(out)(x)
    diff = float((probs - eager.probs).abs().max())  # nan when either holds a NaN
    finite = bool(torch.isfinite(probs).all())
    same = bool(torch.equal(labels, eager.labels) and torch.equal(codes, eager.codes))
    if not (finite and diff <= 1e-5 and same):  # NaN-aware: a nan difference is a disagreement
        raise SystemExit(f"exported model disagrees with the eager student: max |dprob| {diff:.2e}, "
                         f"finite probabilities {finite}, same labels/codes {same}")
    print(f"exported {args.student} -> {out} ({args.format}; max |dprob| vs eager {diff:.1e}, labels and codes equal)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
