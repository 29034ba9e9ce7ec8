"""The model configs bench_gpu_families.py builds its random-weight models from: the published
diffusers configs (config.json of the folders, defaults left out) of runwayml/stable-diffusion-v1-5
and stabilityai/stable-diffusion-xl-base-1.0 (UNet, VAE, text encoders, noise scheduler) for the
full-size run, and the tiny models of webapp/trainer/builtin/tiny_model.py for --smoke (CPU).
FULL and SMOKE map a family to what a case builds and feeds.
"""
from __future__ import annotations

SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                 prediction_type="epsilon", clip_sample=False, steps_offset=1)
SD15_UNET = dict(
    act_fn="silu", attention_head_dim=8, block_out_channels=[320, 640, 1280, 1280], center_input_sample=False,
    cross_attention_dim=768, down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                               "CrossAttnDownBlock2D", "DownBlock2D"],
    downsample_padding=1, flip_sin_to_cos=True, freq_shift=0, in_channels=4, layers_per_block=2,
    mid_block_scale_factor=1, norm_eps=1e-05, norm_num_groups=32, out_channels=4, sample_size=64,
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"])
SD_VAE = dict(
    act_fn="silu", block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
    in_channels=3, latent_channels=4, layers_per_block=2, norm_num_groups=32, out_channels=3, sample_size=512,
    up_block_types=["UpDecoderBlock2D"] * 4)  # scaling_factor 0.18215 (the default)
CLIP_L = dict(  # openai/clip-vit-large-patch14's text model: SD 1.5's encoder and SDXL's first
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
    max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-05, projection_dim=768,
    bos_token_id=0, eos_token_id=2, pad_token_id=1)
SDXL_UNET = dict(
    act_fn="silu", addition_embed_type="text_time", addition_embed_type_num_heads=64, addition_time_embed_dim=256,
    attention_head_dim=[5, 10, 20], block_out_channels=[320, 640, 1280], center_input_sample=False,
    cross_attention_dim=2048, down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    downsample_padding=1, dual_cross_attention=False, flip_sin_to_cos=True, freq_shift=0, in_channels=4,
    layers_per_block=2, mid_block_scale_factor=1, norm_eps=1e-05, norm_num_groups=32, num_class_embeds=None,
    only_cross_attention=False, out_channels=4, projection_class_embeddings_input_dim=2816,
    resnet_time_scale_shift="default", sample_size=128, transformer_layers_per_block=[1, 2, 10],
    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], upcast_attention=None,
    use_linear_projection=True)
SDXL_VAE = dict(SD_VAE, sample_size=1024, scaling_factor=0.13025, force_upcast=True)
OPENCLIP_BIGG = dict(  # SDXL's text_encoder_2 (CLIPTextModelWithProjection)
    vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
    max_position_embeddings=77, hidden_act="gelu", layer_norm_eps=1e-05, projection_dim=1280,
    bos_token_id=0, eos_token_id=2, pad_token_id=1)

# the tiny models of webapp/trainer/builtin/tiny_model.py, for --smoke (CPU)
TINY_UNET = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=[32, 64],
                 down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
                 up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"], attention_head_dim=8, norm_num_groups=8)
TINY_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[16, 32, 64, 64],
                down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                layers_per_block=1, norm_num_groups=4, sample_size=64)
TINY_CLIP = dict(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 max_position_embeddings=77, projection_dim=32, hidden_act="quick_gelu",
                 bos_token_id=0, eos_token_id=1, pad_token_id=1)

# family -> what a case builds and feeds: (unet, vae, encoders [(config, with projection)], resolution,
# batch, text width, pooled width)
FULL = {
    "sd15": dict(unet=SD15_UNET, vae=SD_VAE, encoders=[(CLIP_L, False)], resolution=512, batch=4,
                 text_width=768, pooled=None),
    "sdxl": dict(unet=SDXL_UNET, vae=SDXL_VAE, encoders=[(CLIP_L, False), (OPENCLIP_BIGG, True)], resolution=1024,
                 batch=1, text_width=768 + 1280, pooled=1280),
}
SMOKE = {
    "sd15": dict(unet=dict(TINY_UNET, cross_attention_dim=32), vae=TINY_VAE, encoders=[(TINY_CLIP, False)],
                 resolution=64, batch=4, text_width=32, pooled=None),
    "sdxl": dict(unet=dict(TINY_UNET, cross_attention_dim=64, use_linear_projection=True,
                           addition_embed_type="text_time", addition_time_embed_dim=8,
                           projection_class_embeddings_input_dim=32 + 6 * 8),
                 vae=TINY_VAE, encoders=[(TINY_CLIP, False), (dict(TINY_CLIP, hidden_act="gelu"), True)],
                 resolution=64, batch=1, text_width=64, pooled=32),
}
