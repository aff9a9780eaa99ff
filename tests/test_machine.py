"""headrecon.machine: the CPU identity, torch's SIMD kernels and library versions recorded with every result."""
from __future__ import annotations

import torch

import hashlib

from headrecon.machine import cpu_caches, cpu_identity, machine_info, machine_kind

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC
stepping\t: 1
microcode\t: 0x1000065
flags\t\t: fpu avx2

processor\t: 1
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: Intel Xeon
stepping\t: 8
"""


def test_cpu_identity_reads_the_first_processor(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text(CPUINFO)
    cpu = cpu_identity(str(f))
    assert cpu == {"vendor": "AuthenticAMD", "family": "25", "model": "1", "name": "AMD EPYC", "stepping": "1",
                   "microcode": "0x1000065", "flags_md5": hashlib.md5(b"avx2 fpu").hexdigest()[:12]}
    # without the file: a name from the platform module, nothing else
    other = cpu_identity(str(tmp_path / "missing"))
    assert set(other) == {"name"}


def test_cpu_caches_reads_each_level(tmp_path):
    for i, (level, kind, size) in enumerate([(1, "Data", "32K"), (1, "Instruction", "32K"), (2, "Unified", "512K"),
                                             (3, "Unified", "32768K")]):
        d = tmp_path / f"index{i}"
        d.mkdir()
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
    assert cpu_caches(str(tmp_path)) == {"L1d": "32K", "L1i": "32K", "L2": "512K", "L3": "32768K"}
    assert cpu_caches(str(tmp_path / "missing")) == {}


def test_machine_kind_tells_two_cpus_of_one_name_apart(tmp_path):
    a = {"cpu_id": {"name": "AMD EPYC", "vendor": "AuthenticAMD", "family": "25", "model": "1", "stepping": "1"},
         "cpu_capability": "AVX2"}
    b = {"cpu_id": dict(a["cpu_id"], family="23", model="49", stepping="0"), "cpu_capability": "AVX2"}
    assert machine_kind(a) == "AMD EPYC (AuthenticAMD family 25 model 1 stepping 1), torch CPU kernels AVX2"
    assert machine_kind(a) != machine_kind(b)
    assert machine_kind(dict(a, gpu="NVIDIA H100")).endswith(", GPU NVIDIA H100")


def test_machine_info_records_what_decides_the_numbers():
    info = machine_info(torch.device("cpu"))
    assert info["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert info["torch"] == torch.__version__ and info["gpu"] is None and info["device"] == "cpu"
    assert {"numpy", "scipy", "trimesh", "Pillow"} <= set(info["libraries"]) and info["libraries"]["numpy"]
    assert info["kind"] == machine_kind(info) and info["cpu"] in info["kind"]
