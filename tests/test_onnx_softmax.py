"""Flooring softmax inputs below their row's maximum leaves attention's outputs as fp32 gave them, either ReduceMax form."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from ember_train.onnx_softmax import floor_softmax_inputs


def masked_attention(opset: int) -> onnx.ModelProto:
    """softmax(scores + mask) @ values over the last axis, as the exported attention computes it."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["scores", "mask"], ["masked"], name="add"),
         helper.make_node("Softmax", ["masked"], ["weights"], name="softmax", axis=-1),
         helper.make_node("MatMul", ["weights", "values"], ["attended"], name="attend")], "masked attention",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", "heads", "queries", "keys"])
         for name in ("scores", "mask")] + [helper.make_tensor_value_info("values", TensorProto.FLOAT,
                                                                          ["batch", "heads", "keys", "width"])],
        [helper.make_tensor_value_info("attended", TensorProto.FLOAT, ["batch", "heads", "queries", "width"])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("opset", [17, 18])
def test_floored_softmax_inputs_leave_the_attention_outputs_as_they_were(opset):
    rng = np.random.default_rng(0)
    scores = (rng.standard_normal((2, 4, 16, 16)) * 30).astype(np.float32)  # rows spanning more than the floor depth
    mask = np.where(np.triu(np.ones((16, 16), dtype=bool), 1), np.finfo(np.float32).min, 0).astype(np.float32)
    inputs = {"scores": scores, "mask": np.broadcast_to(mask, scores.shape).copy(),
              "values": rng.standard_normal((2, 4, 16, 8)).astype(np.float32)}
    model = masked_attention(opset)
    before = ort.InferenceSession(model.SerializeToString()).run(None, inputs)[0]
    assert floor_softmax_inputs(model, opset) == 1
    assert {"ReduceMax", "Max"} <= {node.op_type for node in model.graph.node}
    after = ort.InferenceSession(model.SerializeToString()).run(None, inputs)[0]
    np.testing.assert_array_equal(after, before)
