"""int8 versions of an export's graphs: dynamic int8 for the transformer graphs and the head, static QDQ for vision.

Dynamic int8 stores weights as int8 and quantizes activations at run time, so it needs no calibration;
onnxruntime has no dynamic int8 Gemm, so the Gemm nodes the exporter writes for GPT-2 and nn.Linear layers
are first rewritten as MatMul + Add. Static QDQ fixes the activations' ranges from calibration pixels,
which a convolutional graph needs (the shipped RepViT ran 4-5x slower than fp32 with dynamic int8 convolutions).
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static

from ember_core.onnx_layout import VISION

DYNAMIC = "dynamic int8"
STATIC_QDQ = "static QDQ int8"


def int8_method(graph: str) -> str:
    """How `graph` is made int8: static QDQ for the vision graph, dynamic int8 for the others."""
    return STATIC_QDQ if graph == VISION else DYNAMIC


def quantize_graph(graph: str, fp32_file: Path, int8_file: Path, pixels: np.ndarray | None = None) -> None:
    """Write the int8 version of the fp32 graph file; `pixels` (B,3,S,S) calibrate the vision graph."""
    with _quiet():
        if int8_method(graph) == STATIC_QDQ:
            if pixels is None:
                raise ValueError(f"the {graph} graph is quantized statically and needs calibration pixels")
            quantize_static(str(fp32_file), str(int8_file), _OneBatch({"pixel_values": pixels}),
                            quant_format=QuantFormat.QDQ, per_channel=True, weight_type=QuantType.QInt8,
                            activation_type=QuantType.QUInt8)
        else:
            # onnx's shape inference stops at the fused kernels of the sentence encoder (com.microsoft Attention):
            # the tensors after them are float, as every activation here is.
            quantize_dynamic(gemm_as_matmul(onnx.load(fp32_file)), str(int8_file), weight_type=QuantType.QInt8,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def gemm_as_matmul(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with each Gemm over a weight initializer (alpha 1, beta 1, A not transposed) as MatMul (+ Add of
    its bias), a transposed weight transposed in place; a Gemm whose weight is shared is left as it is."""
    weights = {tensor.name: tensor for tensor in model.graph.initializer}
    uses: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    nodes = []
    for node in model.graph.node:
        attributes = {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}
        plain = (attributes.get("alpha", 1.0) == 1.0 and attributes.get("beta", 1.0) == 1.0
                 and not attributes.get("transA"))
        if node.op_type != "Gemm" or not plain or node.input[1] not in weights or uses[node.input[1]] != 1:
            nodes.append(node)
            continue
        if attributes.get("transB"):
            weight = weights[node.input[1]]
            weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight).T.copy(), weight.name))
        biased = len(node.input) > 2 and node.input[2] != ""
        product = f"{node.output[0]}/matmul" if biased else node.output[0]
        nodes.append(helper.make_node("MatMul", node.input[:2], [product], name=f"{node.name}/MatMul"))
        if biased:
            nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=f"{node.name}/Add"))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


class _OneBatch(CalibrationDataReader):
    """The calibration inputs, one batch."""

    def __init__(self, inputs: dict[str, np.ndarray]):
        self.batches = iter([inputs])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)


@contextmanager
def _quiet() -> Iterator[None]:
    # onnxruntime's quantizer logs advice and whole tensor protos at WARNING; the command prints what it decided.
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)
