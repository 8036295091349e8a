"""The interface of the ComfyUI core nodes that examples/comfyui/example_workflow_api.json uses: their input names,
types and limits, return types and whether they are output nodes, as ComfyUI's own source declares them (nodes.py:
CLIPTextEncode, KSampler, VAEDecode, VAELoader, UNETLoader, CLIPLoader; comfy_extras/nodes_hunyuan.py:
EmptyHunyuanLatentVideo; nodes_model_advanced.py: ModelSamplingSD3; nodes_images.py: SaveAnimatedWEBP), read for
issue 21 in late 2026, and checked against ComfyUI's own "Wan 2.1 text to video" template
(comfyui-workflow-templates-json 0.1.123, text_to_video_wan.json: the same node types and model file names).

ComfyUI itself is not on PyPI, so the tests cannot import these classes; only their declarations are copied, never
their code, and nothing here runs a model. Combo inputs that list model files take the files of an install:
`core_nodes(installed=...)`; a stock install without the Wan files rejects those values, as ComfyUI does.
"""

from __future__ import annotations

MAX_RESOLUTION = 16384  # nodes.MAX_RESOLUTION
SAMPLERS = ["euler", "euler_ancestral", "heun", "dpmpp_2m", "dpmpp_2m_sde", "ddim", "uni_pc", "uni_pc_bh2", "lcm"]
SCHEDULERS = ["simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal", "linear_quadratic"]
CLIP_TYPES = ["stable_diffusion", "stable_cascade", "sd3", "stable_audio", "mochi", "ltxv", "pixart", "cosmos", "wan"]
# (a subset of comfy.samplers.KSampler.SAMPLERS / SCHEDULERS and CLIPLoader's types: those the workflow uses and more)


def _node(name, required, optional=None, returns=(), output=False):
    inputs = {"required": required, **({"optional": optional} if optional else {})}
    return type(
        name,
        (),
        {
            "INPUT_TYPES": classmethod(lambda cls: inputs),
            "RETURN_TYPES": tuple(returns),
            "OUTPUT_NODE": output,
            "FUNCTION": "run",
            "CATEGORY": "core",
            "run": lambda self, **_: (_ for _ in ()).throw(RuntimeError(f"{name} runs only in ComfyUI")),
        },
    )


def core_nodes(installed: dict[str, list[str]] | None = None) -> dict[str, type]:
    """NODE_CLASS_MAPPINGS entries for the core nodes; `installed` maps a model folder (diffusion_models,
    text_encoders, vae) to the files there, as folder_paths.get_filename_list would."""
    files = {"diffusion_models": [], "text_encoders": [], "vae": [], **(installed or {})}
    return {
        "UNETLoader": _node(
            "UNETLoader",
            {
                "unet_name": (files["diffusion_models"],),
                "weight_dtype": (["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"],),
            },
            returns=("MODEL",),
        ),
        "CLIPLoader": _node(
            "CLIPLoader",
            {"clip_name": (files["text_encoders"],), "type": (CLIP_TYPES,)},
            optional={"device": (["default", "cpu"], {"advanced": True})},
            returns=("CLIP",),
        ),
        "VAELoader": _node("VAELoader", {"vae_name": (files["vae"],)}, returns=("VAE",)),
        "CLIPTextEncode": _node(
            "CLIPTextEncode",
            {"text": ("STRING", {"multiline": True, "dynamicPrompts": True}), "clip": ("CLIP",)},
            returns=("CONDITIONING",),
        ),
        "ModelSamplingSD3": _node(
            "ModelSamplingSD3",
            {"model": ("MODEL",), "shift": ("FLOAT", {"default": 3.0, "min": 0.0, "max": 100.0, "step": 0.01})},
            returns=("MODEL",),
        ),
        "EmptyHunyuanLatentVideo": _node(
            "EmptyHunyuanLatentVideo",
            {
                "width": ("INT", {"default": 848, "min": 16, "max": MAX_RESOLUTION, "step": 16}),
                "height": ("INT", {"default": 480, "min": 16, "max": MAX_RESOLUTION, "step": 16}),
                "length": ("INT", {"default": 25, "min": 1, "max": MAX_RESOLUTION, "step": 4}),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
            },
            returns=("LATENT",),
        ),
        "KSampler": _node(
            "KSampler",
            {
                "model": ("MODEL",),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF}),
                "steps": ("INT", {"default": 20, "min": 1, "max": 10000}),
                "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1}),
                "sampler_name": (SAMPLERS,),
                "scheduler": (SCHEDULERS,),
                "positive": ("CONDITIONING",),
                "negative": ("CONDITIONING",),
                "latent_image": ("LATENT",),
                "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
            },
            returns=("LATENT",),
        ),
        "VAEDecode": _node("VAEDecode", {"samples": ("LATENT",), "vae": ("VAE",)}, returns=("IMAGE",)),
        "SaveAnimatedWEBP": _node(
            "SaveAnimatedWEBP",
            {
                "images": ("IMAGE",),
                "filename_prefix": ("STRING", {"default": "ComfyUI"}),
                "fps": ("FLOAT", {"default": 6.0, "min": 0.01, "max": 1000.0, "step": 0.01}),
                "lossless": ("BOOLEAN", {"default": True}),
                "quality": ("INT", {"default": 80, "min": 0, "max": 100}),
                "method": (["default", "fastest", "slowest"],),
            },
            output=True,
        ),
    }


WAN_FILES = {  # the files ComfyUI's Wan 2.1 text-to-video template downloads into models/
    "diffusion_models": ["wan2.1_t2v_1.3B_fp16.safetensors"],
    "text_encoders": ["umt5_xxl_fp8_e4m3fn_scaled.safetensors"],
    "vae": ["wan_2.1_vae.safetensors"],
}
