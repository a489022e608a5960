"""Build and load the compiled multi-scale deformable attention op (``ext/msda``).

Two shared libraries, JIT-compiled with ``torch.utils.cpp_extension`` at first use and cached:

* ``cpu``: the operator schemas (namespace ``assignlab_msda``) and the CPU kernels. Always built.
* ``cuda``: CUDA kernels registered for the same schemas. Built only when a CUDA toolkit is found
  (``CUDA_HOME`` / ``nvcc``), never decided by ``torch.cuda.is_available()``; the environment
  variable ``ASSIGNLAB_WITH_CUDA=0`` or ``=1`` overrides the detection.

Each build lives in ``<cache>/msda_<variant>_<hash>``, where the hash covers the sources, the
compiler flags and the torch version, so a change to any of them builds afresh and an unchanged
tree reuses the library. ``<cache>`` is ``$ASSIGNLAB_EXT_DIR``, else
``$TORCH_EXTENSIONS_DIR/assignlab``, else ``~/.cache/assignlab/ext``.

``python -m assignlab.ops.build`` (``make ext``) prebuilds and prints where the libraries are.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
from pathlib import Path

import torch

SOURCE_DIR = Path(__file__).resolve().parents[3] / "ext" / "msda"
CPU_SOURCES = ("msda_ops.cpp", "msda_cpu.cpp")
CUDA_SOURCES = ("msda_cuda.cu",)
HEADERS = ("msda.h",)
# -O3 and OpenMP only: no -march, so a cached library runs on any x86-64 machine; the kernels
# pick their AVX2 path at run time.
CPU_CFLAGS = ("-O3", "-fopenmp", "-DNDEBUG")
CPU_LDFLAGS = ("-fopenmp",)
CUDA_CFLAGS = ("-O3", "-DNDEBUG")

_loaded: dict[str, str] = {}


def cache_root() -> Path:
    """Directory under which every build of the op lives."""
    if os.environ.get("ASSIGNLAB_EXT_DIR"):
        return Path(os.environ["ASSIGNLAB_EXT_DIR"])
    if os.environ.get("TORCH_EXTENSIONS_DIR"):
        return Path(os.environ["TORCH_EXTENSIONS_DIR"]) / "assignlab"
    return Path.home() / ".cache" / "assignlab" / "ext"


def cuda_toolkit_found() -> bool:
    """Whether the CUDA kernels can be compiled: ``ASSIGNLAB_WITH_CUDA`` if set, else a toolkit is found.

    A toolkit counts when torch was built with CUDA and ``nvcc`` exists under CUDA_HOME (or on PATH).
    """
    forced = os.environ.get("ASSIGNLAB_WITH_CUDA", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if torch.version.cuda is None:
        return False
    return find_nvcc() is not None


def find_nvcc() -> str | None:
    """Path of nvcc from CUDA_HOME / CUDA_PATH, else PATH, else None."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        home = os.environ.get(var)
        if home and (Path(home) / "bin" / "nvcc").is_file():
            return str(Path(home) / "bin" / "nvcc")
    return shutil.which("nvcc")


def find_cuda_home() -> Path | None:
    """Toolkit root (holding include/cuda_runtime.h): CUDA_HOME / CUDA_PATH, nvcc's parent, /usr/local/cuda.

    nvcc on PATH may be a wrapper script outside the toolkit (e.g. /usr/local/bin/nvcc), so a candidate
    counts only if it holds the runtime headers.
    """
    nvcc = find_nvcc()
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"),
                  str(Path(nvcc).resolve().parents[1]) if nvcc else None, "/usr/local/cuda"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "include" / "cuda_runtime.h").is_file():
            return Path(candidate)
    return None


def default_cuda_arch_list() -> str:
    """``TORCH_CUDA_ARCH_LIST`` if set, else the visible GPUs, else every architecture torch ships for."""
    if os.environ.get("TORCH_CUDA_ARCH_LIST"):
        return os.environ["TORCH_CUDA_ARCH_LIST"]
    if torch.cuda.device_count() > 0:  # only picks architectures; whether to build is decided above
        caps = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
        return ";".join(f"{major}.{minor}" for major, minor in caps) + "+PTX"
    arches = sorted({a.split("_")[1] for a in torch.cuda.get_arch_list() if a.startswith("sm_")}, key=int)
    versions = [f"{int(a[:-1])}.{a[-1]}" for a in arches]
    return ";".join(versions[:-1] + [versions[-1] + "+PTX"]) if versions else "9.0+PTX"


def _gencode_flags(arch_list: str) -> list[str]:
    flags = []
    for arch in arch_list.replace(" ", ";").split(";"):
        if not arch:
            continue
        number = arch.split("+")[0].replace(".", "")
        flags.append(f"-gencode=arch=compute_{number},code=sm_{number}")
        if arch.endswith("+PTX"):
            flags.append(f"-gencode=arch=compute_{number},code=compute_{number}")
    return flags


def _fingerprint(variant: str, sources: list[Path], flags: list[str]) -> str:
    digest = hashlib.sha256()
    for part in (variant, torch.__version__, str(torch.version.cuda), sys.platform, *flags):
        digest.update(part.encode() + b"\0")
    for path in sources:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def build(variant: str = "cpu", *, build_root: Path | None = None, cuda_arch_list: str | None = None,
          verbose: bool = False) -> str:
    """Compile (or reuse) one library of the op and load it into this process.

    Args:
        variant: "cpu" (schemas + CPU kernels) or "cuda" (CUDA kernels).
        build_root: parent of the build directory; defaults to ``cache_root()``.
        cuda_arch_list: for "cuda", e.g. "9.0" or "8.0;9.0+PTX"; defaults to ``default_cuda_arch_list()``.
        verbose: print the compiler commands.
    Returns:
        Path of the shared library, now loaded (its kernels appear under ``torch.ops.assignlab_msda``).
    Raises:
        RuntimeError (or OSError, subprocess errors) when the toolkit is missing or compilation fails.
    """
    if variant not in ("cpu", "cuda"):
        raise ValueError(f"variant must be 'cpu' or 'cuda', got {variant!r}")
    sources = [SOURCE_DIR / name for name in (CPU_SOURCES if variant == "cpu" else CUDA_SOURCES)]
    headers = [SOURCE_DIR / name for name in HEADERS]
    missing = [str(p) for p in sources + headers if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"ext/msda sources not found: {missing} (is assignlab installed from a checkout?)")
    if variant == "cuda":
        if not cuda_toolkit_found():
            raise RuntimeError("no CUDA toolkit found (set CUDA_HOME or put nvcc on PATH, or ASSIGNLAB_WITH_CUDA=1)")
        home = find_cuda_home()
        library_dirs = [f"-L{home / name}" for name in ("lib64", "lib") if home and (home / name).is_dir()]
        options = dict(extra_cflags=["-O3"], with_cuda=True, extra_ldflags=library_dirs,
                       extra_cuda_cflags=[*CUDA_CFLAGS, *_gencode_flags(cuda_arch_list or default_cuda_arch_list())])
    else:
        options = dict(extra_cflags=list(CPU_CFLAGS), extra_ldflags=list(CPU_LDFLAGS), with_cuda=False)
    flags = [f"{k}={v}" for k, v in sorted(options.items())]
    key = _fingerprint(variant, sources + headers, flags)
    directory = (build_root or cache_root()) / f"msda_{variant}_{key}"
    name = f"assignlab_msda_{variant}_{key}"
    library = directory / f"{name}.so"
    if str(library) in _loaded.values():
        return str(library)
    try:
        # The directory name pins sources, flags and torch version: reuse without invoking ninja.
        torch.ops.load_library(str(library))
    except OSError:  # not built yet, or a build interrupted mid-link: (re)build under cpp_extension's lock
        # imported here: importing it warns on every start of a machine without a CUDA runtime
        from torch.utils import cpp_extension

        directory.mkdir(parents=True, exist_ok=True)
        cpp_extension.load(name=name, sources=[str(s) for s in sources], build_directory=str(directory),
                           extra_include_paths=[str(SOURCE_DIR)], verbose=verbose, is_python_module=False,
                           **options)
    _loaded[variant] = str(library)
    return str(library)


def loaded_variants() -> dict[str, str]:
    """Variants loaded into this process so far, with their library paths."""
    return dict(_loaded)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m assignlab.ops.build", description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-only", action="store_true", help="skip the CUDA kernels even if a toolkit is found")
    parser.add_argument("--cuda-arch", default=None, help='e.g. "9.0" or "8.0;9.0+PTX" (default: %(default)s = auto)')
    parser.add_argument("--verbose", action="store_true", help="print the compiler commands")
    args = parser.parse_args(argv)
    print(f"cache directory: {cache_root()}")
    print(f"cpu  library: {build('cpu', verbose=args.verbose)}")
    if args.cpu_only:
        print("cuda library: skipped (--cpu-only)")
    elif cuda_toolkit_found():
        arch = args.cuda_arch or default_cuda_arch_list()
        print(f"cuda library: {build('cuda', cuda_arch_list=arch, verbose=args.verbose)} (architectures {arch})")
    else:
        print("cuda library: skipped (no CUDA toolkit: set CUDA_HOME or ASSIGNLAB_WITH_CUDA=1 to build it)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
