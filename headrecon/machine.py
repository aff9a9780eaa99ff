"""Which machine a result came from: recorded in every run's ``run.json`` and every benchmark's JSON.

The same command and seed give the same mesh on a machine of the same *kind*, and need not on another: the same
CPU model (its family, model and stepping, not only the marketing name, which a VM often shortens to "AMD EPYC"),
the same SIMD kernels chosen by torch (``torch.backends.cpu.get_cpu_capability()``: DEFAULT, AVX2, AVX512...) and
the same library versions. Two VMs that both report "AMD EPYC" gave different demo meshes
(``docs/results/reproducibility.md``), so :func:`machine_info` records all of these, and :func:`machine_kind`
sums them up in one string to compare. What made those two VMs differ is not known; :func:`machine_info` also keeps
what a hypervisor may expose differently under one CPU identity and math libraries may dispatch on (microcode,
the cache sizes, a digest of the CPU flags), so that the next such pair can be told apart.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from importlib import metadata
from typing import Any, Dict, Optional

import torch

__all__ = ["cpu_caches", "cpu_identity", "machine_info", "machine_kind", "write_result"]

_CPUINFO_KEYS = {"vendor_id": "vendor", "cpu family": "family", "model": "model", "stepping": "stepping",
                 "model name": "name", "microcode": "microcode"}
_LIBRARIES = ("numpy", "scipy", "trimesh", "scikit-image", "Pillow")  # Pillow: image decoding and resizing


def cpu_identity(cpuinfo: str = "/proc/cpuinfo") -> Dict[str, str]:
    """The first processor's ``name``, ``vendor``, ``family``, ``model``, ``stepping``, ``microcode`` and
    ``flags_md5`` (the first 12 hex digits of the MD5 of its sorted flags) from ``cpuinfo`` (Linux), each where
    the file has it; on other systems, or when the file cannot be read, ``name`` from :func:`platform.processor`
    only."""
    out: Dict[str, str] = {}
    try:
        with open(cpuinfo) as f:
            for line in f:
                if not line.strip():
                    break  # the end of the first processor's block
                key, _, value = line.partition(":")
                key = key.strip()
                name = _CPUINFO_KEYS.get(key)
                if name is not None and name not in out:
                    out[name] = value.strip()
                elif key == "flags" and "flags_md5" not in out:
                    flags = " ".join(sorted(value.split()))
                    out["flags_md5"] = hashlib.md5(flags.encode()).hexdigest()[:12]
    except OSError:
        pass
    if not out.get("name"):
        out["name"] = platform.processor() or platform.machine()
    return out


def cpu_caches(root: str = "/sys/devices/system/cpu/cpu0/cache") -> Dict[str, str]:
    """The first CPU's cache sizes as Linux reports them (e.g. ``{"L1d": "32K", "L1i": "32K", "L2": "512K",
    "L3": "32768K"}``); empty where ``root`` cannot be read."""
    def read(index: str, name: str) -> str:
        with open(os.path.join(root, index, name)) as f:
            return f.read().strip()

    out: Dict[str, str] = {}
    try:
        for index in sorted(e for e in os.listdir(root) if e.startswith("index")):
            kind = {"Data": "d", "Instruction": "i"}.get(read(index, "type"), "")
            out[f"L{read(index, 'level')}{kind}"] = read(index, "size")
    except OSError:
        pass
    return out


def _version(package: str) -> Optional[str]:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine_kind(info: Dict[str, Any]) -> str:
    """One line naming what decides bit-identical results, from :func:`machine_info`'s dict: e.g.
    ``"AMD EPYC (AuthenticAMD family 25 model 1 stepping 1), torch CPU kernels AVX2"`` (plus the GPU when
    there is one)."""
    cpu = info.get("cpu_id") or {}
    parts = [cpu.get("vendor")] + [f"{k} {cpu[k]}" for k in ("family", "model", "stepping") if cpu.get(k)]
    ids = " ".join(p for p in parts if p)
    detail = f" ({ids})" if ids else ""
    kind = f"{cpu.get('name', info.get('cpu', '?'))}{detail}, torch CPU kernels {info.get('cpu_capability', '?')}"
    return kind + (f", GPU {info['gpu']}" if info.get("gpu") else "")


def machine_info(device: Optional[torch.device] = None) -> Dict[str, Any]:
    """The machine, its load and the software: ``cpu`` (model name), ``cpu_id`` (:func:`cpu_identity`),
    ``cpu_caches`` (:func:`cpu_caches`), ``cpu_capability`` (torch's SIMD kernels), ``cpu_count``,
    ``torch_threads``, ``load_average`` (1, 5, 15 min, or None), ``platform``, ``python``, ``torch``,
    ``libraries`` (versions of numpy, scipy, trimesh, scikit-image, Pillow), ``gpu`` (the device's name when
    ``device`` is CUDA, else None) and ``kind`` (:func:`machine_kind`)."""
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    cpu = cpu_identity()
    gpu = None
    if device is not None and torch.device(device).type == "cuda":
        gpu = torch.cuda.get_device_name(torch.device(device))
    info: Dict[str, Any] = {
        "cpu": cpu["name"], "cpu_id": cpu, "cpu_caches": cpu_caches(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "load_average": load,
        "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
        "libraries": {p: _version(p) for p in _LIBRARIES}, "gpu": gpu,
        "device": None if device is None else str(device)}
    info["kind"] = machine_kind(info)
    return info


def write_result(path, device: Optional[torch.device] = None, **payload) -> None:
    """Write a benchmark's or tool's result as JSON to ``path``: the command line that produced it, the machine
    (:func:`machine_info` of ``device``, default the CPU) and ``payload``'s entries (rows, totals, ...)."""
    data = {"command": " ".join(sys.argv), "machine": machine_info(torch.device(device or "cpu")), **payload}
    with open(path, "w") as f:
        f.write(json.dumps(data, indent=1) + "\n")
