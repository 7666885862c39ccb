"""The BLIP vision transformer (ViT-B/16 or ViT-L/16): pixels -> image features.

Mirrors transformers' BlipVisionModel: patch embedding + class token + learned positions, pre-LN
encoder layers, post_layernorm. BLIP-2's EVA ViT-g is the same computation with a different qkv
bias layout (transformers marks Blip2EncoderLayer "Copied from BlipEncoderLayer").
"""

import numpy as np

from .errors import InputError
from .ops import ACT2FN, attention, bicubic_resize, layer_norm, linear, merge_heads, patch_embed
from .trace import scope, tap


def vision_embeddings(pixel_values, p, cfg, interpolate_pos_encoding=False):
    """Patches, class token and positions. Mirrors BlipVisionEmbeddings.

    Shapes: pixel_values (B, 3, Hs, Ws) -> (B, N, Dv), N = (Hs//P)*(Ws//P) + 1.
    Weights: class_embedding (1, 1, Dv), patch_embedding {weight (Dv, 3, P, P), bias},
             position_embedding (1, 1 + (S/P)^2, Dv).
    """
    B, _, Hs, Ws = pixel_values.shape
    patches = patch_embed(pixel_values, p["patch_embedding"], cfg.patch_size)  # (B, N-1, Dv)
    cls = np.broadcast_to(p["class_embedding"], (B, 1, patches.shape[-1]))
    x = np.concatenate([cls, patches], axis=1)  # (B, N, Dv)
    pos = p["position_embedding"]
    if interpolate_pos_encoding:
        pos = interpolate_positions(pos, x.shape[1] - 1, Hs, Ws, cfg.patch_size)
    elif x.shape[1] > pos.shape[1]:
        raise InputError(
            f"pixel_values of {Hs}x{Ws} give {x.shape[1]} tokens but the position table has "
            f"{pos.shape[1]} rows (image_size {cfg.image_size}); resize the image or pass "
            "interpolate_pos_encoding=True"
        )
    # a smaller image silently uses the first rows of the table, as transformers does
    return tap("embeddings", x + pos[:, : x.shape[1]])


def interpolate_positions(pos, n_patches, Hs, Ws, patch):
    """Resize the position grid to the input's patch grid. Mirrors interpolate_pos_encoding.

    Shapes: pos (1, 1 + G*G, Dv) -> (1, 1 + (Hs//P)*(Ws//P), Dv), by torch's bicubic filter.
    """
    G2 = pos.shape[1] - 1
    if n_patches == G2 and Hs == Ws:  # transformers skips the resize only for square inputs
        return pos
    G, D = int(G2**0.5), pos.shape[-1]
    grid = pos[0, 1:].reshape(G, G, D).transpose(2, 0, 1)  # (g g) d -> d g g
    grid = bicubic_resize(np.ascontiguousarray(grid), Hs // patch, Ws // patch)  # d gh gw
    grid = grid.transpose(1, 2, 0).reshape(1, -1, D)  # d gh gw -> 1 (gh gw) d
    return np.concatenate([pos[:, :1], grid], axis=1)


def vision_attention(x, p, cfg, output_attentions=False):
    """Fused-qkv multi-head self-attention, no mask. Mirrors BlipAttention.

    Shapes: x (B, N, Dv) -> (B, N, Dv), probs (B, H, N, N) if output_attentions else None.
    Weights: qkv {weight (3Dv, Dv), bias (3Dv,)}, projection {weight (Dv, Dv), bias}.
    """
    B, N, D = x.shape
    H = cfg.num_attention_heads
    qkv = linear(x, p["qkv"]).reshape(B, N, 3, H, D // H)  # b n (three h dh)
    q, k, v = qkv.transpose(2, 0, 3, 1, 4)  # -> three b h n dh
    context, probs = attention(q, k, v, scale=(D // H) ** -0.5, return_probs=output_attentions)
    return linear(merge_heads(context), p["projection"]), probs


def encoder_layer(x, p, cfg, output_attentions=False):
    """Pre-LN transformer block. Mirrors BlipEncoderLayer.  x (B, N, Dv) -> (B, N, Dv), probs."""
    eps = cfg.layer_norm_eps
    h = tap("layer_norm1", layer_norm(x, p["layer_norm1"], eps))  # pre-LN: normalise, then attend
    a, probs = vision_attention(h, p["self_attn"], cfg, output_attentions)
    x = x + tap("self_attn", a)
    h = tap("layer_norm2", layer_norm(x, p["layer_norm2"], eps))
    h = ACT2FN[cfg.hidden_act](linear(h, p["mlp"]["fc1"]))  # (B, N, F)
    h = linear(h, p["mlp"]["fc2"])  # (B, N, F) -> (B, N, Dv)
    return x + tap("mlp", h), probs


def vision_model(pixel_values, p, cfg, interpolate_pos_encoding=False, output_attentions=False):
    """Mirrors BlipVisionModel.forward.

    Shapes: pixel_values (B, 3, Hs, Ws) -> last_hidden_state (B, N, Dv), pooler_output (B, Dv),
            hidden_states: L+1 arrays (B, N, Dv) (embeddings, then each layer before
            post_layernorm), attentions: L arrays (B, H, N, N) if output_attentions else [].
    """
    x = vision_embeddings(pixel_values, p["embeddings"], cfg, interpolate_pos_encoding)
    hidden_states, attentions = [x], []
    for i, layer in enumerate(p["encoder"]["layers"]):
        with scope(f"encoder.layers.{i}"):
            x, probs = encoder_layer(x, layer, cfg, output_attentions)
        hidden_states.append(tap(f"encoder.layers.{i}", x))
        if output_attentions:  # (B, H, N, N) a layer: kept only when asked for
            attentions.append(probs)
    tap("encoder", x)
    last = tap("post_layernorm", layer_norm(x, p["post_layernorm"], cfg.layer_norm_eps))
    # transformers applies post_layernorm a second time to the class token for the pooled output
    pooled = tap("post_layernorm", layer_norm(last[:, 0], p["post_layernorm"], cfg.layer_norm_eps))
    return last, pooled, hidden_states, attentions


def vision_tower(x, p, cfg, interpolate_pos_encoding=False, output_attentions=False):
    """vision_model as the part of a bigger model: its outputs, recorded under "vision_model".

    Shapes: x (B, 3, Hs, Ws) -> as vision_model: (B, N, Dv), (B, Dv), hidden states, attentions.
    """
    with scope("vision_model"):
        out = vision_model(x, p, cfg, interpolate_pos_encoding, output_attentions)
    tap("vision_model", out[0])
    return out


def vision_shapes(cfg):
    """{key: shape} of every parameter of BlipVisionModel (or Blip2VisionModel) for this config,
    under the checkpoint's names. Blip2VisionConfig(qkv_bias=False) has no qkv bias."""
    D, F, P = cfg.hidden_size, cfg.intermediate_size, cfg.patch_size
    shapes = {
        "embeddings.class_embedding": (1, 1, D),
        "embeddings.patch_embedding.weight": (D, 3, P, P),
        "embeddings.patch_embedding.bias": (D,),
        "embeddings.position_embedding": (1, (cfg.image_size // P) ** 2 + 1, D),
        "post_layernorm.weight": (D,),
        "post_layernorm.bias": (D,),
    }
    for i in range(cfg.num_hidden_layers):
        layer = {
            "self_attn.qkv.weight": (3 * D, D),
            "self_attn.qkv.bias": (3 * D,),
            "self_attn.projection.weight": (D, D),
            "self_attn.projection.bias": (D,),
            "layer_norm1.weight": (D,),
            "layer_norm1.bias": (D,),
            "mlp.fc1.weight": (F, D),
            "mlp.fc1.bias": (F,),
            "mlp.fc2.weight": (D, F),
            "mlp.fc2.bias": (D,),
            "layer_norm2.weight": (D,),
            "layer_norm2.bias": (D,),
        }
        if not getattr(cfg, "qkv_bias", True):
            del layer["self_attn.qkv.bias"]
        shapes.update({f"encoder.layers.{i}.{k}": s for k, s in layer.items()})
    return shapes
