"""precision: auto picks bf16 only where the hardware runs it natively; an emulated bf16 warns in one line."""

from __future__ import annotations

import pytest

from lmforge.models import hardware
from lmforge.models.hardware import Capabilities, choose_precision, cpu_capabilities

XEON = "processor : 0\nflags : fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
EPYC = "processor : 0\nflags : fpu sse2 avx2 fma\n"
GRAVITON = "processor : 0\nFeatures : fp asimd bf16 i8mm\n"


@pytest.mark.parametrize("cpuinfo, native", [(XEON, True), (EPYC, False), (GRAVITON, False), ("", False)])
def test_cpu_bf16_is_read_from_the_flags(cpuinfo, native):
    capabilities = cpu_capabilities(cpuinfo)
    assert capabilities.bf16_native is native
    choice = choose_precision("auto", capabilities)
    assert choice.precision == ("bf16" if native else "fp32") and choice.reason.startswith("auto: ")
    assert ("avx512_bf16" in choice.reason) is native


@pytest.mark.parametrize("bf16, expected", [(True, "bf16"), (False, "fp16")])
def test_cuda_gets_bf16_where_supported_else_fp16(bf16, expected):
    assert choose_precision("auto", Capabilities("cuda", bf16, "a GPU")).precision == expected


def test_other_devices_and_explicit_choices():
    assert choose_precision("auto", Capabilities("mps", False, "mps")).precision == "fp32"
    epyc = cpu_capabilities(EPYC)
    assert choose_precision("fp32", epyc) == hardware.PrecisionChoice("fp32", "as configured", False)
    assert choose_precision("bf16", epyc).emulated and not choose_precision("bf16", cpu_capabilities(XEON)).emulated
    with pytest.raises(ValueError, match="unknown precision"):
        choose_precision("int4", epyc)


def test_bf16_on_a_cpu_without_it_warns_once_with_the_measured_slowdown(monkeypatch, capsys):
    monkeypatch.setattr(hardware, "device_capabilities", lambda device, index=None: cpu_capabilities(EPYC))
    monkeypatch.setattr(hardware, "bf16_slowdown", lambda: 7.5)
    hardware.resolve.cache_clear()
    try:
        assert hardware.resolve("bf16", "cpu").precision == "bf16"
        hardware.resolve("bf16", "cpu")
        assert hardware.resolve("auto", "cpu").precision == "fp32"
    finally:
        hardware.resolve.cache_clear()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "emulated" in lines[0] and "7.5x slower than fp32" in lines[0], lines


def test_the_slowdown_measurement_runs():
    assert hardware.bf16_slowdown(size=32, repeats=1) > 0


def test_a_config_asking_for_bf16_on_a_cpu_without_it_trains_and_warns_in_one_line(tiny_config, monkeypatch, capsys):
    from lmforge.cli import main

    monkeypatch.setattr(hardware, "device_capabilities", lambda device, index=None: cpu_capabilities(EPYC))
    hardware.resolve.cache_clear()
    try:
        assert main(["train", str(tiny_config), "train.epochs=1", "train.precision=bf16"]) == 0
    finally:
        hardware.resolve.cache_clear()
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "bf16 on this CPU is emulated" in warnings[0] and "x slower than fp32" in warnings[0]
