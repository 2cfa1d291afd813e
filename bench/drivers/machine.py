"""The machine a benchmark ran on, as every report's header shows it: the
CPU's model name, the instruction-set flags that decide which kernels run
(AVX2, FMA, AVX-512, VNNI, bf16, AMX), and the logical CPUs."""
import os
import platform

FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


def cpu():
    """(model name, the FLAGS this CPU has, logical CPUs), from /proc/cpuinfo."""
    lines = open("/proc/cpuinfo").read().splitlines()
    field = lambda key: next((l.split(":", 1)[1] for l in lines if l.startswith(key)), "")  # noqa: E731
    name = field("model name").strip() or platform.processor()
    flags = set(field("flags").split())
    return name, [f for f in FLAGS if f in flags], os.cpu_count()
