"""Whether the CUDA kernels of this build can run here (build_info()["cuda"] and
``python -m adlkernels info``).

Three probes, none of which needs a GPU or raises: the extension module (built? loads?
its CUDA runtime version and CMAKE_CUDA_ARCHITECTURES), the CUDA driver through ctypes
(libcuda: its version, the visible devices, their names and compute capabilities; the
CUDA runtime of the extension cannot tell why it sees no device) and cupy (the CUDA
kernels take cupy arrays). ``verdict`` turns their findings into one reason.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import os
import re
import sys

# CUdevice_attribute values of cuda.h (stable across CUDA releases).
_CC_MAJOR, _CC_MINOR = 75, 76


def _version(v: int) -> str:
    return f"{v // 1000}.{(v % 1000) // 10}"


def probe_module() -> dict:
    """The extension: built, loads (or why not), runtime version, architectures, devices."""
    from ._backend import cuda_module

    if importlib.util.find_spec(f"{__package__}._adlk_cuda") is None:
        return {"built": False, "loads": False}
    mod = cuda_module()
    if mod is None:
        try:
            importlib.import_module(f"{__package__}._adlk_cuda")
            error = "unknown error"
        except Exception as exc:  # the reason is all that is wanted here
            error = f"{type(exc).__name__}: {exc}"
        return {"built": True, "loads": False, "error": error}
    return {
        "built": True,
        "loads": True,
        "version": mod.runtime_version(),
        "architectures": [a for a in mod.architectures().split(",") if a],
        "devices": mod.device_count(),
        "driver": mod.driver_version() or None,
    }


def _driver_library():
    names = ["nvcuda.dll"] if sys.platform == "win32" else ["libcuda.so.1", "libcuda.so"]
    for name in names:
        try:
            return ctypes.CDLL(name), None
        except OSError:
            continue
    return None, f"{names[0]} not found"


def _cu_error(lib, code: int) -> str:
    name, text = ctypes.c_char_p(), ctypes.c_char_p()
    try:
        lib.cuGetErrorName(code, ctypes.byref(name))
        lib.cuGetErrorString(code, ctypes.byref(text))
    except AttributeError:
        pass
    label = name.value.decode() if name.value else f"CUresult {code}"
    return f"{label} ({text.value.decode()})" if text.value else label


def probe_driver() -> dict:
    """The CUDA driver: its version and the visible devices (CUDA_VISIBLE_DEVICES applies)."""
    lib, error = _driver_library()
    if lib is None:
        return {"found": False, "error": error, "gpus": []}
    out: dict = {"found": True, "error": None, "version": None, "gpus": []}
    try:
        v = ctypes.c_int()
        if lib.cuDriverGetVersion(ctypes.byref(v)) == 0 and v.value:
            out["version"] = _version(v.value)
        rc = lib.cuInit(0)
        if rc != 0:
            out["error"] = _cu_error(lib, rc)
            return out
        n = ctypes.c_int()
        rc = lib.cuDeviceGetCount(ctypes.byref(n))
        if rc != 0:
            out["error"] = _cu_error(lib, rc)
            return out
        for i in range(n.value):
            dev, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
            name = ctypes.create_string_buffer(256)
            gpu: dict = {"index": i}
            if lib.cuDeviceGet(ctypes.byref(dev), i) == 0:
                if lib.cuDeviceGetName(name, len(name), dev) == 0:
                    gpu["name"] = name.value.decode(errors="replace")
                if (lib.cuDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, dev) == 0
                        and lib.cuDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, dev) == 0):
                    gpu["compute_capability"] = f"{major.value}.{minor.value}"
            out["gpus"].append(gpu)
    except (AttributeError, OSError) as exc:  # a library that is not the CUDA driver
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


def probe_cupy(import_it: bool) -> dict:
    """cupy: imported (import_it) or only looked for (find_spec, cheap)."""
    if importlib.util.find_spec("cupy") is None:
        return {"installed": False}
    if not import_it:
        return {"installed": True}
    try:
        import cupy
    except Exception as exc:  # cupy raises more than ImportError when CUDA is amiss
        return {"installed": True, "imports": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"installed": True, "imports": True, "version": getattr(cupy, "__version__", None)}


def arch_runs(architectures, cc: str):
    """Whether code built for CMAKE_CUDA_ARCHITECTURES runs on a device of compute
    capability cc ("major.minor"): machine code (NN-real) on the same major version with
    an equal or higher minor, PTX (NN-virtual) on any equal or higher capability (JIT);
    "a" variants only on that exact capability. None when an entry is not a number
    ("all", "native": the build chose)."""
    major, minor = (int(p) for p in cc.split("."))
    runs = False
    for arch in architectures:
        m = re.fullmatch(r"(\d+)(\d)([af]?)(?:-(real|virtual))?", arch.strip())
        if m is None:
            return None
        amajor, aminor, variant, kind = int(m[1]), int(m[2]), m[3], m[4]
        if variant == "a":
            runs |= (major, minor) == (amajor, aminor)
            continue
        if kind in (None, "real"):
            runs |= major == amajor and minor >= aminor
        if kind in (None, "virtual") and variant == "":
            runs |= (major, minor) >= (amajor, aminor)
        if kind in (None, "virtual") and variant == "f":
            runs |= major == amajor and minor >= aminor
    return runs


def verdict(status: dict):
    """None when the CUDA kernels can run here, else the first reason why not."""
    if not status.get("built"):
        return ("this adlkernels build has no CUDA extension (built without a CUDA toolkit, "
                "or with ADLK_CUDA=OFF)")
    if not status.get("loads"):
        return f"the CUDA extension does not load ({status.get('error')})"
    if not status.get("driver_found", True):
        return f"no CUDA driver ({status.get('driver_error')})"
    runtime, driver = status.get("version"), status.get("driver")
    if runtime and driver and int(driver.split(".")[0]) < int(runtime.split(".")[0]):
        return (f"the CUDA driver supports CUDA {driver}, this build's runtime is CUDA "
                f"{runtime} (update the driver)")
    if status.get("driver_error"):
        return f"the CUDA driver reports {status['driver_error']}"
    gpus = status.get("gpus", [])
    if not gpus:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        hint = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
        return "no CUDA device is visible" + hint
    if not status.get("devices"):
        return (f"the driver sees {len(gpus)} device(s) but this build's CUDA runtime "
                f"{runtime} sees none (driver {driver})")
    if not any(g.get("supported") is not False for g in gpus):
        found = ", ".join(f"{g.get('name', '?')} ({g.get('compute_capability', '?')})" for g in gpus)
        return (f"no visible device runs this build's code (built for "
                f"{','.join(status.get('architectures', []))}; found {found})")
    cupy = status.get("cupy", {})
    if not cupy.get("installed"):
        return "cupy is not installed (the CUDA kernels take cupy arrays)"
    if cupy.get("imports") is False:
        return f"cupy does not import ({cupy.get('error')})"
    return None


def cuda_status(import_cupy: bool = False) -> dict:
    """Everything above in one dict; "runnable" and "reason" are the verdict."""
    status = probe_module()
    if status["built"]:
        driver = probe_driver()
        status["driver_found"], status["driver_error"] = driver["found"], driver["error"]
        if status.get("driver") is None and driver.get("version"):
            status["driver"] = driver["version"]
        status.setdefault("driver", None)
        archs = status.get("architectures", [])
        for gpu in driver["gpus"]:
            cc = gpu.get("compute_capability")
            gpu["supported"] = arch_runs(archs, cc) if cc and archs else None
        status["gpus"] = driver["gpus"]
        status["cupy"] = probe_cupy(import_cupy)
    reason = verdict(status)
    status["runnable"] = reason is None
    status["reason"] = reason
    return status
