"""A tiny random vision-language model for tests: LLaVA (a 2-layer CLIP vision tower, a projector, a 2-layer Llama)
with the embedded model's real SmolLM2 tokenizer plus an `<image>` token, and a chat template that places the image.
Built from configs in a second or two; nothing is downloaded.

    from vision_models import tiny_llava
    path = tiny_llava(tmp_path / "vlm")   # then describe_image(image, vlm=str(path))
"""

from __future__ import annotations

from pathlib import Path

IMAGE_SIZE = 32  # CLIP input side in pixels: 4x4 patches of 8 px, so a prompt carries 16 image tokens
PATCH_SIZE = 8

# SmolLM2's ChatML, where a message's content may also be a list of parts; an image part becomes the processor's
# `<image>` placeholder, which LlavaProcessor expands to one token per patch.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou describe images.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>\n{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_llava(path: str | Path, *, hidden: int = 32, seed: int = 0, logit_scale: float = 4.0) -> Path:
    """Save a random LlavaForConditionalGeneration and its LlavaProcessor to `path`. `logit_scale` sharpens the
    output logits so greedy choices are rarely near-ties."""
    import torch
    from transformers import (
        AutoTokenizer,
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    from enhancer.models import embedded_base_dir

    tokenizer = AutoTokenizer.from_pretrained(embedded_base_dir())
    tokenizer.add_tokens(["<image>"], special_tokens=True)
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    vision = CLIPVisionConfig(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        projection_dim=hidden,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=image_token_id,
        image_seq_length=(IMAGE_SIZE // PATCH_SIZE) ** 2,
        vision_feature_select_strategy="default",  # drop CLIP's CLS token: 16 features for 16 placeholders
        vision_feature_layer=-1,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    if logit_scale != 1.0:
        with torch.no_grad():
            model.lm_head.weight.mul_(logit_scale)
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # the CLS token the vision tower adds, which "default" then drops
        chat_template=CHAT_TEMPLATE,
    )
    path = Path(path)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
