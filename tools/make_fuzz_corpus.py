#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/seed-*): small valid
inputs of each format and a few near misses, for libFuzzer to start from and for the test
suite to replay. Inputs the fuzzer found are added beside them as regression-* files by hand
(scripts/fuzz.sh prints where libFuzzer wrote them). Needs numpy (Debian's python3-numpy).

Usage: tools/make_fuzz_corpus.py [REPO_ROOT]
"""
import io
import json
import os
import struct
import sys

import numpy as np

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")


def write(target, name, data):
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(folder, "seed-" + name), "wb") as out:
        out.write(data)


def safetensors(tensors, metadata=None):
    """tensors: list of (name, dtype string, shape, raw bytes)."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def f32(values):
    return np.asarray(values, dtype="<f4").tobytes()


def safetensors_seeds():
    rng = np.random.default_rng(0)
    write("safetensors", "f32-bf16-i8", safetensors([
        ("a.weight", "F32", [2, 3], f32(rng.standard_normal(6))),
        ("b", "BF16", [4], np.asarray([0x3F80, 0xBF80, 0x7F80, 0x0000], dtype="<u2").tobytes()),
        ("c", "I8", [2, 2], bytes([1, 255, 127, 129])),
        ("d", "F16", [], np.asarray([1.5], dtype="<f2").tobytes()),
        ("e", "F64", [1], np.asarray([2.0], dtype="<f8").tobytes()),
        ("f", "I64", [0, 3], b""),
    ], {"format": "pt"}))
    write("safetensors", "empty", safetensors([]))
    write("safetensors", "overlap", safetensors([("x", "F32", [1], f32([1.0]))])[:-4] + f32([1.0]) + f32([2.0]))
    good = safetensors([("x", "F32", [2], f32([1.0, 2.0]))])
    write("safetensors", "truncated", good[:-3])
    write("safetensors", "huge-shape", safetensors([("x", "F32", [2**40, 2**30], b"")]))


def npy(array, version=(1, 0), fortran=False):
    buffer = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": fortran, "shape": array.shape}
    np.lib.format._write_array_header(buffer, header, version)
    buffer.write(array.tobytes(order="F" if fortran else "C"))
    return buffer.getvalue()


def npy_seeds():
    values = np.arange(6, dtype="<f4").reshape(2, 3)
    write("npy", "f32-v1", npy(values))
    write("npy", "f32-v2", npy(values, (2, 0)))
    write("npy", "f32-v3", npy(values, (3, 0)))
    write("npy", "scalar", npy(np.asarray(1.0, dtype="<f4")))
    write("npy", "f64", npy(values.astype("<f8")))
    write("npy", "fortran", npy(values, fortran=True))
    write("npy", "truncated", npy(values)[:-5])


def model_config_seeds():
    models = os.path.join(ROOT, "tests", "data", "models")
    for name in sorted(os.listdir(models)):
        with open(os.path.join(models, name, "config.json"), "rb") as config:
            write("model_config", name, config.read())
    with open(os.path.join(ROOT, "models", "default", "config.json"), "rb") as config:
        write("model_config", "default", config.read())
    write("model_config", "hf-mamba2", json.dumps({
        "model_type": "mamba2", "num_heads": 4, "head_dim": 8, "vocab_size": 50, "hidden_size": 16,
        "state_size": 8, "num_hidden_layers": 2, "n_groups": 2, "expand": 2, "conv_kernel": 4, "chunk_size": 8,
        "time_step_limit": [0.0, float("inf")], "tie_word_embeddings": False}))
    write("model_config", "bad-type", '{"model_type": "mamba", "hidden_size": "16"}')


def run_config_seeds():
    with open(os.path.join(ROOT, "models", "default.run.json"), "rb") as config:
        write("run_config", "default", config.read())
    write("run_config", "minimal", json.dumps({
        "model": {"format": "mambakit-2", "d_model": 16, "n_layer": 1, "vocab_size": 257,
                  "mixer": {"name": "s6", "options": {}}, "head": {"name": "lm", "options": {}}},
        "data": {"train": "data/train.txt", "format": "bytes"},
        "steps": 3, "batch_size": 2, "seq_len": 8, "output_dir": "runs/x"}))
    write("run_config", "unknown-key", '{"stepz": 3}')


def tokenizer_json_seeds():
    bytes_to_unicode = {}
    n = 0
    for b in range(256):
        if 33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255:
            bytes_to_unicode[b] = chr(b)
        else:
            bytes_to_unicode[b] = chr(256 + n)
            n += 1
    vocab = {bytes_to_unicode[b]: b for b in range(256)}
    merges = ["\u0120 t", "h e", "\u0120t he", "l l", "o ,"]
    for merge in merges:
        vocab.setdefault(merge.replace(" ", ""), len(vocab))
    tokenizer = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": len(vocab), "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "vocab": vocab, "merges": merges},
    }
    write("tokenizer_json", "byte-level-bpe", json.dumps(tokenizer, ensure_ascii=False))
    tokenizer["normalizer"] = {"type": "NFC"}
    write("tokenizer_json", "nfc", json.dumps(tokenizer, ensure_ascii=False))
    tokenizer["model"]["merges"] = [m.split(" ") for m in merges]
    write("tokenizer_json", "pair-merges", json.dumps(tokenizer, ensure_ascii=False))
    write("tokenizer_json", "wordpiece", '{"model": {"type": "WordPiece", "vocab": {}}}')


def tokenizer_text_seeds():
    write("tokenizer_text", "english", "The quick brown fox jumps over the lazy dog's back, 1234 times.\n")
    write("tokenizer_text", "scripts", "\u03ba\u03b1\u03bb\u03b7\u03bc\u03ad\u03c1\u03b1 \u4f60\u597d \u0645\u0631\u062d\u0628\u0627 "
                                       "e\u0301 \U0001f600\t\r\n")
    write("tokenizer_text", "special", "a<|endoftext|>b<|endoftext|><|endoftext")
    write("tokenizer_text", "invalid-utf8", b"\xff\xfe\xc3\x28\xe2\x82 \xf0\x9f\x98")
    write("tokenizer_text", "spaces", "   \n\n  x  ")


def token_input_seeds():
    write("token_input", "square", "[[1, 2, 3], [4, 5, 6]]")
    write("token_input", "ragged", "[[1], [2, 3]]")
    write("token_input", "bad-id", "[[1, -2]]")
    write("token_input", "huge-id", "[[18446744073709551615]]")
    write("token_input", "nested", "[[[1]]]")


def state(layers, metadata=None):
    tensors = []
    rng = np.random.default_rng(1)
    for layer, shapes in enumerate(layers):
        for name, shape in shapes:
            tensors.append((f"layers.{layer}.{name}", "F32", shape, f32(rng.standard_normal(int(np.prod(shape))))))
    return safetensors(tensors, metadata or {"kind": "mambakit-inference-state", "seqlen_offset": "5", "batch": "2"})


def inference_state_seeds():
    # Batch 2 states of tests/data/models/tiny_tied (Mamba-1: d_inner 32, d_state 4, d_conv 4)
    # and mamba2_official (d_inner 48, 4 heads of 12, 2 groups of d_state 8, conv over 80 channels).
    mamba1 = [("conv_state", [2, 32, 4]), ("ssm_state", [2, 32, 4])]
    mamba2 = [("conv_state", [2, 80, 4]), ("ssm_state", [2, 4, 12, 8])]
    write("inference_state", "mamba1", state([mamba1, mamba1]))
    write("inference_state", "mamba2", state([mamba2, mamba2]))
    write("inference_state", "bad-offset", state([mamba1, mamba1]).replace(b'"5"', b'"x"'))
    # tests/data/hybrid/hybrid_mamba2_attn: Mamba-2 at layers 0 and 2 (d_inner 64, 4 heads of 16,
    # 2 groups of d_state 8, conv over 96 channels), attention at 1 and 3 (KV caches of 2 heads of
    # 8 that hold 5 tokens: the token axis is 1), rows holding 5 and 3 tokens.
    hybrid2 = [("conv_state", [2, 96, 4]), ("ssm_state", [2, 4, 16, 8])]
    attention = [("k_cache", [2, 5, 2, 8]), ("v_cache", [2, 5, 2, 8])]
    hybrid_metadata = {"kind": "mambakit-inference-state", "seqlen_offset": "5", "positions": "5,3", "batch": "2"}
    write("inference_state", "hybrid", state([hybrid2, attention, hybrid2, attention], hybrid_metadata))


def plugin_info_seeds():
    write("plugin_info", "valid", b"\x00s6\x001.0\x00\x00\x00selective_scan\x00good_name\x00help\x00")
    write("plugin_info", "nulls", b"\x01\x00\x01\x00\x01\x00\x03\x00\x02\x00\x01\x00Bad Name\x00")
    write("plugin_info", "duplicate", b"\x00p\x00v\x00\x00\x01\x00\x00dup\x00h\x00\x01\x00\x00dup\x00h\x00")


if __name__ == "__main__":
    safetensors_seeds()
    npy_seeds()
    model_config_seeds()
    run_config_seeds()
    tokenizer_json_seeds()
    tokenizer_text_seeds()
    token_input_seeds()
    inference_state_seeds()
    plugin_info_seeds()
