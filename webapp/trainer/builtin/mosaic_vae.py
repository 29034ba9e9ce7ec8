"""Set a diffusers AutoencoderKL's weights so that it is a mosaic codec, without training.

The encoder averages each pixel block (2^(blocks - 1) square: 4x4 with the tiny model's 3 blocks;
latent channels 0-2 = RGB, 3 = 0) and the decoder repeats each latent pixel over its block: a 64 px
image comes back as a 16x16 mosaic with its colours intact. A random VAE decodes noise, and a tiny one learns flat colours slowly, so the
demo model starts from this and its samples show coloured shapes.

How: every residual branch and the attention output are zeroed (identity blocks), the
down/up-samplers become block averages / nearest copies, and the two GroupNorm+SiLU pairs at
the ends are made near-linear: each colour channel shares its group with its negation (the
group mean stays put) and a large constant (the group variance barely moves), and a large
offset keeps SiLU in its linear range.
"""
from __future__ import annotations

import math

import torch
from diffusers.models.attention_processor import Attention
from diffusers.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D

CARRIER = 100.0   # the constant channel that dominates each GroupNorm group's variance
OFFSET = 12.0     # keeps SiLU(x + OFFSET) ~ x + OFFSET for x in [-1, 1]
LOGVAR = -20.0    # a near-deterministic posterior


def _zero(module: torch.nn.Module) -> None:
    for param in module.parameters():
        param.data.zero_()


def _identity_conv(conv: torch.nn.Conv2d, channels, taps) -> None:
    """out[c] = sum over ``taps`` ((row, col), weight) of in[c], for each c in ``channels``."""
    _zero(conv)
    for channel in channels:
        for (row, col), weight in taps:
            conv.weight.data[channel, channel, row, col] = weight


def _identity_blocks(model: torch.nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, ResnetBlock2D):
            _zero(module.conv2)
            if module.conv_shortcut is not None:
                shortcut = module.conv_shortcut
                _zero(shortcut)
                size = min(shortcut.in_channels, shortcut.out_channels)
                shortcut.weight.data[:size, :size, 0, 0] = torch.eye(size)
        elif isinstance(module, Attention):
            _zero(module.to_out[0])
        elif isinstance(module, Downsample2D):
            conv = module.conv
            _identity_conv(conv, range(conv.out_channels), [((r, c), 0.25) for r in (0, 1) for c in (0, 1)])
        elif isinstance(module, Upsample2D):
            conv = module.conv
            _identity_conv(conv, range(conv.out_channels), [((1, 1), 1.0)])


def _spread(conv: torch.nn.Conv2d, tap=(1, 1)) -> None:
    """Input colour c → channels 4c (as is), 4c+1 (negated), 4c+2 (the constant carrier)."""
    _zero(conv)
    for colour in range(3):
        conv.weight.data[4 * colour, colour][tap] = 1.0
        conv.weight.data[4 * colour + 1, colour][tap] = -1.0
        conv.bias.data[4 * colour + 2] = CARRIER


def _linear_norm(norm: torch.nn.GroupNorm) -> None:
    """With the layout of ``_spread`` and inputs at 0, GroupNorm's output becomes x + OFFSET."""
    size = norm.num_channels // norm.num_groups
    carriers = min(3, math.ceil(size / 4))  # colour triples (x, -x, carrier) in group 0
    mean = carriers * CARRIER / size
    std = math.sqrt(carriers * CARRIER ** 2 / size - mean ** 2)
    norm.weight.data.fill_(std)
    norm.bias.data.fill_(mean + OFFSET)


def _gather(conv: torch.nn.Conv2d, bias: float) -> None:
    """Channels 4c → output c, minus the offset (the latent's or the image's colours)."""
    _zero(conv)
    for colour in range(3):
        conv.weight.data[colour, 4 * colour, 1, 1] = 1.0
        conv.bias.data[colour] = bias


@torch.no_grad()
def make_mosaic_vae(vae) -> None:
    """In place; the VAE needs at least 16 channels a block and GroupNorm groups of at least 4
    channels in the decoder's last block (any number of blocks: each but the last halves the size)."""
    encoder, decoder = vae.encoder, vae.decoder
    _identity_blocks(vae)
    _spread(encoder.conv_in)
    _linear_norm(encoder.conv_norm_out)
    _gather(encoder.conv_out, -OFFSET)
    latent = encoder.conv_out.out_channels // 2
    encoder.conv_out.bias.data[latent:] = LOGVAR
    _identity_conv(vae.quant_conv, range(vae.quant_conv.out_channels), [((0, 0), 1.0)])
    _identity_conv(vae.post_quant_conv, range(vae.post_quant_conv.out_channels), [((0, 0), 1.0)])
    _spread(decoder.conv_in)
    _linear_norm(decoder.conv_norm_out)
    _gather(decoder.conv_out, -OFFSET)
