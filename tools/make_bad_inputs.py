#!/usr/bin/python3
"""Writes the damaged files of the bad-input suite (tests/data/bad_inputs/), each a small
variation of the test model tests/data/models/tiny_tied (Mamba-1, Hugging Face layout,
vocabulary 40) or of a well-formed input. docs/RELIABILITY.md's table runs the CLI on them.

Usage: /usr/bin/python3 tools/make_bad_inputs.py [REPO_ROOT]
"""
import json
import os
import shutil
import struct
import sys

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))
BASE = os.path.join(ROOT, "tests", "data", "models", "tiny_tied")
OUT = os.path.join(ROOT, "tests", "data", "bad_inputs")


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def write_safetensors(path, header, data):
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def model(name, config=None, weights=None):
    """A copy of the base model named `name`; `config`/`weights` edit it (functions of the
    loaded config dict, or of (header, data) returning bytes or (header, data))."""
    folder = os.path.join(OUT, name)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(BASE, "config.json")) as f:
        base_config = json.load(f)
    if config is None:
        shutil.copy(os.path.join(BASE, "config.json"), folder)
    else:
        text = config(base_config)
        if text is not None:
            with open(os.path.join(folder, "config.json"), "w") as f:
                f.write(text if isinstance(text, str) else json.dumps(text, indent=2))
    target = os.path.join(folder, "model.safetensors")
    if weights is None:
        shutil.copy(os.path.join(BASE, "model.safetensors"), target)
    else:
        header, data = read_safetensors(os.path.join(BASE, "model.safetensors"))
        result = weights(header, data)
        if isinstance(result, bytes):
            with open(target, "wb") as f:
                f.write(result)
        elif result is not None:
            write_safetensors(target, *result)


def edited(change):
    def apply(config):
        change(config)
        return config
    return apply


def first_f32(header):
    name = sorted(k for k in header if k != "__metadata__" and header[k]["dtype"] == "F32")[0]
    return name, header[name]["data_offsets"][0]


def nan_weights(header, data):
    name, begin = first_f32(header)
    data = bytearray(data)
    data[begin:begin + 4] = struct.pack("<f", float("nan"))
    return header, bytes(data)


def drop_tensor(header, data):
    name = "backbone.layers.1.mixer.A_log"
    del header[name]
    return header, data


def wrong_shape(header, data):
    entry = header["backbone.layers.0.mixer.D"]
    entry["shape"] = [entry["shape"][0] // 2, 2]
    return header, data


def odd_dtype(header, data):
    header["backbone.layers.0.mixer.D"]["dtype"] = "U8"
    return header, data


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    model("no_config", config=lambda c: None)
    model("config_not_json", config=lambda c: '{"model_type": "mamba", "hidden_size": 16,')
    model("config_unknown_key", config=edited(lambda c: c.update({"hiden_size": 16})))
    model("config_bad_value", config=edited(lambda c: c.update({"state_size": -4})))
    model("config_huge_layers", config=edited(lambda c: c.update({"num_hidden_layers": 1000000})))
    model("config_huge_vocab", config=edited(lambda c: c.update({"vocab_size": 10**12})))
    model("config_deep", config=lambda c: "[" * 100000 + "]" * 100000)
    model("no_weights", weights=lambda h, d: None)
    with open(os.path.join(BASE, "model.safetensors"), "rb") as f:
        blob = f.read()
    model("weights_truncated", weights=lambda h, d: blob[:len(blob) - 100])
    model("weights_header_absurd", weights=lambda h, d: struct.pack("<Q", 1 << 60) + blob[8:])
    model("weights_not_safetensors", weights=lambda h, d: b"PK\x03\x04 this is a zip file, not safetensors\n")
    model("weights_missing_tensor", weights=drop_tensor)
    model("weights_wrong_shape", weights=wrong_shape)
    model("weights_odd_dtype", weights=odd_dtype)
    model("weights_nan", weights=nan_weights)
    model("tokenizer_broken")
    with open(os.path.join(OUT, "tokenizer_broken", "tokenizer.json"), "w") as f:
        f.write('{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b c"]}')
    model("tokenizer_wordpiece")
    with open(os.path.join(OUT, "tokenizer_wordpiece", "tokenizer.json"), "w") as f:
        json.dump({"model": {"type": "WordPiece", "vocab": {"a": 0}}}, f)

    model("tokenizer_huge_id")
    with open(os.path.join(ROOT, "tests", "fuzz", "corpus", "tokenizer_json", "seed-byte-level-bpe")) as f:
        tokenizer = json.load(f)
    tokenizer["model"]["vocab"]["zz"] = 2000000000
    with open(os.path.join(OUT, "tokenizer_huge_id", "tokenizer.json"), "w") as f:
        json.dump(tokenizer, f)

    def text(name, content):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(content.encode() if isinstance(content, str) else content)

    text("tokens.json", "[[1, 2, 3, 4]]")
    text("tokens_not_json.json", "[[1, 2, 3")
    text("tokens_ragged.json", "[[1, 2, 3], [4, 5]]")
    text("tokens_out_of_vocab.json", "[[1, 2, 300]]")
    text("tokens_negative.json", "[[1, -2]]")
    text("tokens_empty.json", "[]")
    text("run_unknown_key.json", json.dumps({"stepz": 10}))
    tiny = {"task": "causal_lm", "d_model": 16, "n_layer": 1, "vocab_size": 257}
    text("run_bad_lr.json", json.dumps({"model": tiny, "train_data": "tests/data/bad_inputs/nul_bytes.txt",
                                        "tokenizer": "byte", "seq_len": 8, "batch_size": 1, "steps": 1,
                                        "lr": -1.0, "output_dir": "/tmp/mambakit-bad-input-run"}))
    text("run_missing_data.json", json.dumps({"model": tiny, "train_data": "tests/data/bad_inputs/no_such_corpus.txt",
                                              "tokenizer": "byte", "seq_len": 8, "batch_size": 1, "steps": 1,
                                              "output_dir": "/tmp/mambakit-bad-input-run"}))
    text("run_not_object.json", "[1, 2, 3]")
    text("nul_bytes.txt", b"In the beginning\x00\x00\x00 God\n")
    text("empty.txt", "")
    text("not_a_plugin.so", "this text file only looks like a plugin\n")


if __name__ == "__main__":
    main()
