"""Copy the embedded all-MiniLM-L6-v2 into .device/all-MiniLM-L6-v2 with fp16 weights (~45 MB), the form
that travels with the working tree to a GPU machine without network for benchmarks/gpu_bench.sh.

    python benchmarks/prepare_device_model.py [--out .device/all-MiniLM-L6-v2]

Loaders upcast to fp32 (simcse's and the benchmark's sentence-transformers model both ask for fp32), so the
copy trains and encodes like the original up to fp16 rounding of the initial weights.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def main() -> int:
    from safetensors.torch import load_file, save_file

    from simcse.modeling.model_dir import embedded_model_path

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=str(REPO / ".device" / "all-MiniLM-L6-v2"))
    args = parser.parse_args()
    src, out = embedded_model_path(), Path(args.out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(
        src,
        tmp,
        ignore=shutil.ignore_patterns("*.bin", "*.h5", "*.onnx", "onnx", "openvino", "*.msgpack", "*.ot"),
    )
    for path in tmp.rglob("*.safetensors"):
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
        save_file(tensors, str(path), metadata={"format": "pt"})
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    print(f"{out}: {size:.1f} MB (fp16 weights)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
