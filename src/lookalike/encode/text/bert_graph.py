"""The numpy BERT tower's forward pass as an ONNX graph, built from the same weights.

No torch and no transformers: `onnx.helper` writes the graph op for op as
`bert.NumpyBertTower.forward` computes it (embeddings, layer norms, attention with a
padding bias, erf GELU, pooling), so ONNX Runtime gives the numpy tower's vectors (cosine
>= 0.9999, tested) several times faster. Inputs: `input_ids` (int64, batch x length) and
`attention_mask` (float32, 1 for tokens, 0 for padding); output `pooled` (float32, batch x
hidden), not yet normalised (the tower normalises, as the numpy tower does).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from lookalike.encode.text.bert import NumpyBertTower

OPSET = 17  # LayerNormalization arrived in opset 17
IR_VERSION = 8  # what opset 17 needs; older runtimes read it too


class _Graph:
    """Collects nodes and initializers with unique names."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value: np.ndarray, hint: str = "c") -> str:
        from onnx import numpy_helper

        name = self.name(hint)
        # np.array, not ascontiguousarray: that one turns a 0-d index into a 1-d one.
        self.initializers.append(numpy_helper.from_array(np.array(value, order="C"), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, **attrs: Any) -> str:
        from onnx import helper

        out = self.name(hint or op_type.lower())
        # Named after their output: quantisation picks nodes by name (see ort_cache).
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def dense(self, x: str, weight: np.ndarray, bias: np.ndarray, hint: str) -> str:
        # Weights are kept (out, in) like torch's Linear; MatMul wants (in, out).
        weight_t = self.const(weight.T.astype(np.float32), hint)
        product = self.op("MatMul", [x, weight_t], hint=f"{hint}_matmul")
        return self.op("Add", [product, self.const(bias.astype(np.float32), f"{hint}_bias")])

    def norm(self, x: str, params: tuple[np.ndarray, np.ndarray], eps: float) -> str:
        weight, bias = params
        return self.op(
            "LayerNormalization",
            [x, self.const(weight, "ln_w"), self.const(bias, "ln_b")],
            axis=-1,
            epsilon=eps,
        )

    def scalar(self, value: float) -> str:
        return self.const(np.asarray(value, dtype=np.float32), "s")

    def ints(self, *values: int) -> str:
        return self.const(np.asarray(values, dtype=np.int64), "i")


def build_bert_graph(tower: NumpyBertTower) -> Any:
    """The tower's forward pass (tokens -> pooled hidden states) as an onnx ModelProto."""
    from onnx import TensorProto, helper

    g = _Graph()
    heads, dim = tower.heads, tower.dim
    head_dim = dim // heads
    eps = tower.eps
    # Embeddings: word rows + the first `length` positions + token type 0.
    words = g.op("Gather", [g.const(tower.word, "word"), "input_ids"], axis=0)
    length = g.op("Slice", [g.op("Shape", ["input_ids"]), g.ints(1), g.ints(2)])
    positions = g.op("Slice", [g.const(tower.positions, "positions"), g.ints(0), length, g.ints(0)])
    x = g.op("Add", [g.op("Add", [words, positions]), g.const(tower.token_type, "token_type")])
    x = g.norm(x, tower.embedding_norm, eps)
    # Padding keys get the most negative float, as in the numpy tower: exp() of it is 0.
    padding = g.op("Sub", [g.scalar(1.0), "attention_mask"])
    key_bias = g.op("Mul", [padding, g.scalar(float(np.finfo(np.float32).min))])
    key_bias = g.op("Unsqueeze", [key_bias, g.ints(1, 2)])  # batch x 1 x 1 x length
    scale = g.scalar(1.0 / math.sqrt(head_dim))
    for layer in tower.layers:
        qkv = g.dense(x, layer.qkv, layer.qkv_bias, "qkv")
        qkv = g.op("Reshape", [qkv, g.ints(0, 0, 3, heads, head_dim)])
        qkv = g.op("Transpose", [qkv], perm=[2, 0, 3, 1, 4])  # 3 x batch x heads x len x hd
        q, k, v = (g.op("Gather", [qkv, g.const(np.int64(i))], axis=0) for i in range(3))
        keys = g.op("Transpose", [k], perm=[0, 1, 3, 2])
        scores = g.op("MatMul", [g.op("Mul", [q, scale]), keys])
        weights = g.op("Softmax", [g.op("Add", [scores, key_bias])], axis=-1)
        context = g.op("Transpose", [g.op("MatMul", [weights, v])], perm=[0, 2, 1, 3])
        context = g.op("Reshape", [context, g.ints(0, 0, dim)])
        attended = g.dense(context, layer.attention_out, layer.attention_out_bias, "attn_out")
        x = g.norm(g.op("Add", [x, attended]), layer.attention_norm, eps)
        hidden = _gelu(g, g.dense(x, layer.up, layer.up_bias, "up"))
        down = g.dense(hidden, layer.down, layer.down_bias, "down")
        x = g.norm(g.op("Add", [x, down]), layer.output_norm, eps)
    pooled = _pool(g, x, tower.folder.pooling)
    g.nodes.append(helper.make_node("Identity", [pooled], ["pooled"]))
    graph = helper.make_graph(
        g.nodes,
        "lookalike_bert",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "length"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.FLOAT, ["batch", "length"]),
        ],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", dim])],
        g.initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="lookalike"
    )
    model.ir_version = IR_VERSION
    return model


def _gelu(g: _Graph, x: str) -> str:
    """BERT's exact GELU: x * (1 + erf(x / sqrt 2)) / 2."""
    erf = g.op("Erf", [g.op("Mul", [x, g.scalar(1.0 / math.sqrt(2.0))])])
    return g.op("Mul", [g.op("Mul", [x, g.op("Add", [erf, g.scalar(1.0)])]), g.scalar(0.5)])


def _pool(g: _Graph, x: str, mode: str) -> str:
    """`bert._pool` over batch x length x hidden states."""
    if mode == "cls_token":
        return g.op("Gather", [x, g.const(np.int64(0))], axis=1)
    mask = g.op("Unsqueeze", ["attention_mask", g.ints(2)])  # batch x length x 1
    if mode == "max_tokens":
        kept = g.op("Greater", [mask, g.scalar(0.0)])
        masked = g.op("Where", [kept, x, g.scalar(-1e9)])
        return g.op("ReduceMax", [masked], axes=[1], keepdims=0)  # an attribute until opset 18
    total = g.op("ReduceSum", [g.op("Mul", [x, mask]), g.ints(1)], keepdims=0)
    count = g.op("ReduceSum", ["attention_mask", g.ints(1)], keepdims=1)
    count = g.op("Max", [count, g.scalar(1e-9)])
    if mode == "mean_sqrt_len_tokens":
        count = g.op("Sqrt", [count])
    return g.op("Div", [total, count])
