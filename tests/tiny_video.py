"""Tiny random text-to-video pipelines (Wan, LTX-Video, CogVideoX) built offline for tests: small UMT5/T5
encoders from a config, a word-level tokenizer made with `tokenizers`, and small transformers and VAEs with
random weights. Each is saved with `save_pretrained`, so the backend loads it exactly as it loads a real model.

    path = build("wan", tmp_path / "tiny-wan")   # a folder with model_index.json
"""

from __future__ import annotations

from pathlib import Path

WORDS = (
    "a an the of in on at over under with and fox dog cat kite boat sea snow field city night dawn red blue green "
    "slow fast camera shot light running flying walking"
).split()


def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def _t5(umt5: bool):
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    options = dict(vocab_size=len(WORDS) + 3, d_model=32, d_ff=64, d_kv=8, num_layers=2, num_heads=4)
    if umt5:
        return UMT5EncoderModel(UMT5Config(**options))
    return T5EncoderModel(T5Config(**options))


def build(kind: str, path: Path) -> Path:
    import diffusers
    import torch

    torch.manual_seed(0)
    if kind == "wan":
        pipe = diffusers.WanPipeline(
            tokenizer=tokenizer(),
            text_encoder=_t5(umt5=True),
            vae=diffusers.AutoencoderKLWan(
                base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
            ),
            scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=7.0),
            transformer=diffusers.WanTransformer3DModel(
                patch_size=(1, 2, 2),
                num_attention_heads=2,
                attention_head_dim=12,
                in_channels=16,
                out_channels=16,
                text_dim=32,
                freq_dim=256,
                ffn_dim=32,
                num_layers=2,
                rope_max_seq_len=32,
            ),
        )
    elif kind == "ltx":
        pipe = diffusers.LTXPipeline(
            tokenizer=tokenizer(),
            text_encoder=_t5(umt5=False),
            vae=diffusers.AutoencoderKLLTXVideo(
                latent_channels=8,
                block_out_channels=(8, 8, 8, 8),
                decoder_block_out_channels=(8, 8, 8, 8),
                layers_per_block=(1, 1, 1, 1, 1),
                decoder_layers_per_block=(1, 1, 1, 1, 1),
                spatio_temporal_scaling=(True, True, False, False),
                decoder_spatio_temporal_scaling=(True, True, False, False),
                decoder_inject_noise=(False, False, False, False, False),
                upsample_residual=(False, False, False, False),
                upsample_factor=(1, 1, 1, 1),
                patch_size=1,
                patch_size_t=1,
            ),
            scheduler=diffusers.FlowMatchEulerDiscreteScheduler(),
            transformer=diffusers.LTXVideoTransformer3DModel(
                in_channels=8,
                out_channels=8,
                num_attention_heads=4,
                attention_head_dim=8,
                cross_attention_dim=32,
                num_layers=1,
                caption_channels=32,
            ),
        )
    elif kind == "cogvideox":
        pipe = diffusers.CogVideoXPipeline(
            tokenizer=tokenizer(),
            text_encoder=_t5(umt5=False),
            vae=diffusers.AutoencoderKLCogVideoX(
                block_out_channels=(8, 8, 8, 8),
                latent_channels=4,
                layers_per_block=1,
                norm_num_groups=2,
                temporal_compression_ratio=4,
            ),
            transformer=diffusers.CogVideoXTransformer3DModel(
                num_attention_heads=4,
                attention_head_dim=8,
                in_channels=4,
                out_channels=4,
                time_embed_dim=2,
                text_embed_dim=32,
                num_layers=1,
                sample_width=4,
                sample_height=4,
                sample_frames=9,
                patch_size=2,
                temporal_compression_ratio=4,
                max_text_seq_length=226,
            ),
            scheduler=diffusers.CogVideoXDDIMScheduler(),
        )
    else:
        raise ValueError(kind)
    pipe.save_pretrained(path)
    return path
