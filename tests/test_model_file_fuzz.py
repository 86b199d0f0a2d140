"""Fuzzing the model file reader.

- libFuzzer on the C++ reader (tests/fuzz/fuzz_model_file.cpp) under AddressSanitizer and
  UndefinedBehaviorSanitizer, seeded with tests/fuzz/corpus: needs clang++ with libFuzzer
  (Debian: apt-get install clang libclang-rt-14-dev) and is skipped without. It runs for
  $FASTLSTM_FUZZ_SECONDS seconds: 60 by default under CI (CI set), 10 otherwise; 0 skips it. The
  binary is cached under build/fuzz/ while its sources do not change.
- Random mutations of the corpus through the Python binding, everywhere.
"""

import hashlib
import importlib.util
import json
import os
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

import fastlstm

ROOT = Path(__file__).resolve().parent.parent
FUZZ = ROOT / "tests" / "fuzz"
CORPUS = FUZZ / "corpus"
# The model file reader and the engine it builds, without the CPU backend (no_backend.cpp) and
# without CUDA.
SOURCES = [FUZZ / "fuzz_model_file.cpp", FUZZ / "no_backend.cpp", ROOT / "csrc" / "cuda_unavailable.cpp",
           *sorted((ROOT / "csrc" / "model_file").glob("*.cpp")),
           *(ROOT / "csrc" / name for name in ("lstm.cpp", "lstm_stream.cpp", "cpu_check.cpp", "fork_safety.cpp",
                                               "config.cpp", "weights.cpp", "version.cpp", "thread_budget.cpp"))]


def _json_include() -> list:
    """-I for nlohmann/json when the nlohmann-json wheel has it (else the system's is used)."""
    spec = importlib.util.find_spec("nlohmann_json")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (Path(folder) / "include" / "nlohmann" / "json.hpp").exists():
            return [f"-I{Path(folder) / 'include'}"]
    return []


FLAGS = ["-std=c++17", "-g", "-O1", "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=undefined",
         f"-I{ROOT / 'csrc' / 'include'}", f"-I{ROOT / 'csrc'}", *_json_include(), '-DFASTLSTM_VERSION="fuzz"',
         '-DFASTLSTM_SIMD_LEVEL="fuzz"', '-DFASTLSTM_BUILD_ISA="baseline"']
INSTALL_HINT = "Debian: apt-get install clang libclang-rt-14-dev"


def _fuzz_seconds() -> int:
    value = os.environ.get("FASTLSTM_FUZZ_SECONDS")
    if value is not None:
        return int(value)
    return 60 if os.environ.get("CI") else 10


def _compiler() -> str:
    for name in ("clang++", "clang++-14"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(f"clang++ not found: the libFuzzer run needs clang with libFuzzer ({INSTALL_HINT})")


def _build_fuzzer(tmp_dir: Path) -> Path:
    clang = _compiler()
    probe = tmp_dir / "probe.cpp"
    probe.write_text('#include <cstddef>\n#include <cstdint>\n'
                     'extern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n')
    result = subprocess.run([clang, "-fsanitize=fuzzer,address", str(probe), "-o", str(tmp_dir / "probe")],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"{clang} cannot build libFuzzer targets ({INSTALL_HINT}): {result.stderr.strip()[-300:]}")

    digest = hashlib.sha256(subprocess.run([clang, "--version"], capture_output=True).stdout)
    digest.update(" ".join(FLAGS).encode())
    headers = sorted((ROOT / "csrc" / "include" / "fastlstm").glob("*.hpp")) + sorted((ROOT / "csrc").glob("*.h*")) \
        + sorted((ROOT / "csrc" / "model_file").glob("*.hpp"))
    for source in SOURCES + headers:
        digest.update(source.read_bytes())
    cache = ROOT / "build" / "fuzz" / digest.hexdigest()[:16]
    binary = cache / "fuzz_model_file"
    if binary.exists():
        return binary
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:
        cache = tmp_dir
        binary = cache / "fuzz_model_file"
    partial = cache / f"fuzz_model_file.{os.getpid()}"
    result = subprocess.run([clang, *FLAGS, *map(str, SOURCES), "-o", str(partial)], capture_output=True, text=True)
    assert result.returncode == 0, f"building the fuzz target failed:\n{result.stderr[-4000:]}"
    partial.replace(binary)
    return binary


def test_libfuzzer_finds_nothing_in_the_model_file_reader(tmp_path):
    seconds = _fuzz_seconds()
    if seconds <= 0:
        pytest.skip("FASTLSTM_FUZZ_SECONDS=0")
    binary = _build_fuzzer(tmp_path)
    work = tmp_path / "corpus"  # new inputs go here; tests/fuzz/corpus is only read
    work.mkdir()
    command = [
        str(binary), f"-max_total_time={seconds}", "-max_len=4096", "-timeout=10",
        "-malloc_limit_mb=64",  # any allocation above it is a finding: weights are at most 2x a 4 KB file
        f"-dict={FUZZ / 'safetensors.dict'}", f"-artifact_prefix={tmp_path}/", "-print_final_stats=1",
        str(work), str(CORPUS),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 300)
    findings = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "leak-", "oom-", "timeout-")))
    assert result.returncode == 0 and not findings, (
        f"libFuzzer found {findings} (rerun: {' '.join(command[:1] + [str(tmp_path / f) for f in findings])}):\n"
        + result.stderr[-6000:]
    )
    executed = [line for line in result.stderr.splitlines() if line.startswith("stat::number_of_executed_units")]
    assert executed and int(executed[0].split(":")[-1]) > 1000, result.stderr[-2000:]


# ------------------------------------------------------------------------------- mutations in Python

INTERESTING = [0, 1, 2, 3, 4, 7, 8, 255, 2**31, 2**32, 2**62, 2**63 - 1, 2**63, 2**64]


def _split(content: bytes):
    if len(content) < 8:
        return None
    (length,) = struct.unpack("<Q", content[:8])
    if length > len(content) - 8:
        return None
    try:
        return json.loads(content[8:8 + length]), content[8 + length:]
    except ValueError:
        return None


def _join(header, data: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def _mutate_header(rng: random.Random, header: dict, data: bytes) -> bytes:
    names = [k for k in header if k != "__metadata__"]
    if not names:
        return _join(header, data)
    name = rng.choice(names)
    entry = header[name]
    kind = rng.randrange(8)
    if kind == 0 and entry.get("shape"):
        entry["shape"][rng.randrange(len(entry["shape"]))] = rng.choice(INTERESTING)
    elif kind == 1:
        entry["data_offsets"][rng.randrange(2)] = rng.choice(INTERESTING + [len(data), len(data) + 1])
    elif kind == 2:
        entry["dtype"] = rng.choice(["F16", "BF16", "I64", "F64", "F32", "F4", "BOOL", "Q8"])
    elif kind == 3:
        del entry[rng.choice(list(entry))]
    elif kind == 4:
        header[name.replace("l0", "l1") if "l0" in name else name + "_reverse"] = dict(entry)
    elif kind == 5:
        del header[name]
    elif kind == 6:
        header.setdefault("__metadata__", {})[rng.choice(["hidden_size", "num_layers", "bias", "dtype"])] = rng.choice(
            ["0", "1", "7", "true", "float64", "-1", "x", ""])
    else:
        entry["shape"] = entry.get("shape", []) + [rng.choice(INTERESTING)]
    return _join(header, data)


def _mutate(rng: random.Random, content: bytes) -> bytes:
    parsed = _split(content)
    if parsed is not None and rng.random() < 0.6:
        try:
            return _mutate_header(rng, *parsed)
        except (AttributeError, IndexError, KeyError, TypeError):  # an earlier mutation broke the schema
            return _join(*parsed)
    data = bytearray(content)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(4)
        position = rng.randrange(len(data) + 1)
        if kind == 0 and data:
            data[min(position, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif kind == 1:
            data[position:position] = bytes(rng.choice(b'{}[]":,0123456789\\\xff') for _ in range(rng.randint(1, 3)))
        elif kind == 2:
            del data[position:position + rng.randint(1, 16)]
        else:
            del data[position:]
    return bytes(data)


def test_mutated_model_files_load_or_raise_value_error(tmp_path):
    rng = random.Random(20240601)
    seeds = [path.read_bytes() for path in sorted(CORPUS.iterdir())]
    path = tmp_path / "mutated.safetensors"
    outcomes = {"loaded": 0, "rejected": 0}
    for _ in range(1500):
        content = rng.choice(seeds)
        for _ in range(rng.randint(1, 3)):
            content = _mutate(rng, content)
        path.write_bytes(content)
        for prefix in ("", "rnn."):
            try:
                fastlstm.LSTM.load(path, prefix, num_threads=1)
                outcomes["loaded"] += 1
            except ValueError as error:
                assert str(error).startswith(f"{path}: "), error
                outcomes["rejected"] += 1
    assert outcomes["loaded"] >= 10 and outcomes["rejected"] >= 1000, outcomes


def test_the_seed_corpus_is_valid():
    for path in sorted(CORPUS.iterdir()):
        if path.name == "empty_header.safetensors":
            continue
        prefix = "rnn." if path.name == "network.safetensors" else ""
        assert fastlstm.LSTM.load(path, prefix).hidden_size >= 1, path.name
