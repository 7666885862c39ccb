"""Every Numba twin in kernels.py equals its NumPy reference in ops.py.

CI runs this file a second time with NUMBA_DISABLE_JIT=1 so the kernel bodies run as Python.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from minblip import kernels, ops


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(data=st.data())
def test_gelu_twin_is_bit_identical(dtype, data):
    x = data.draw(arrays(dtype, array_shapes(min_dims=1, max_dims=3, max_side=7),
                         elements=st.floats(-20, 20, width=32)))
    if data.draw(st.booleans()) and x.ndim > 1:
        x = x.swapaxes(0, -1)  # non-contiguous input
    np.testing.assert_array_equal(kernels.gelu(x), ops.gelu.reference(x))


def test_gelu_twin_declines_what_it_does_not_take():
    assert kernels.gelu(np.zeros(3, np.float16)) is NotImplemented
    assert kernels.gelu(np.zeros(0, np.float32)) is NotImplemented


def test_backend_switch_selects_reference_or_twin(monkeypatch):
    x = np.linspace(-3, 3, 11, dtype=np.float32)
    calls = []
    monkeypatch.setitem(ops._KERNELS, "gelu", lambda a: calls.append(1) or kernels.gelu(a))
    for name, expect_calls in [("numpy", 0), ("numba", 1)]:
        calls.clear()
        ops.set_backend(name)
        np.testing.assert_array_equal(ops.gelu(x), ops.gelu.reference(x))
        assert len(calls) == expect_calls
    with pytest.raises(ValueError, match="backend"):
        ops.set_backend("cuda")
