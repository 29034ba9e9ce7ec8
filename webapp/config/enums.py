"""OneTrainer's enums, by name, as its config files write them (facts from ../shared/onetrainer).

A *closed* enum is one whose names are settled: any other value is an error. An *open* enum is one
that OneTrainer keeps growing (model types, data types, optimizers, ...): the names here fill the
editor's select, and an unknown but well-formed name is accepted, so that a config written by a
newer OneTrainer still loads.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Enum:
    title: str
    names: tuple[str, ...]
    open: bool = False

    def error(self, value) -> str | None:
        if not isinstance(value, str):
            return f"must be one of: {', '.join(self.names)}"
        if value in self.names or (self.open and NAME.match(value)):
            return None
        if self.open:
            return f"{value!r} is not a {self.title} name (letters, digits and _)"
        return f"{value!r} is not one of: {', '.join(self.names)}"


TIME_UNIT = Enum("TimeUnit", ("EPOCH", "STEP", "SECOND", "MINUTE", "HOUR", "NEVER", "ALWAYS"))
TRAINING_METHOD = Enum("TrainingMethod", ("FINE_TUNE", "LORA", "EMBEDDING", "FINE_TUNE_VAE"))
LR_SCHEDULER = Enum("LearningRateScheduler", (
    "CONSTANT", "LINEAR", "COSINE", "COSINE_WITH_RESTARTS", "COSINE_WITH_HARD_RESTARTS", "REX",
    "ADAFACTOR", "CUSTOM"))
EMA_MODE = Enum("EMAMode", ("OFF", "GPU", "CPU"))
BALANCING_STRATEGY = Enum("BalancingStrategy", ("REPEATS", "SAMPLES"))
PROMPT_SOURCE = Enum("PromptSource", ("sample", "concept", "filename"))

MODEL_TYPE = Enum("ModelType", (
    "STABLE_DIFFUSION_15", "STABLE_DIFFUSION_15_INPAINTING", "STABLE_DIFFUSION_20",
    "STABLE_DIFFUSION_20_BASE", "STABLE_DIFFUSION_20_INPAINTING", "STABLE_DIFFUSION_20_DEPTH",
    "STABLE_DIFFUSION_21", "STABLE_DIFFUSION_21_BASE", "STABLE_DIFFUSION_3", "STABLE_DIFFUSION_35",
    "STABLE_DIFFUSION_XL_10_BASE", "STABLE_DIFFUSION_XL_10_BASE_INPAINTING", "WUERSTCHEN_2",
    "STABLE_CASCADE_1", "PIXART_ALPHA", "PIXART_SIGMA", "FLUX_DEV_1", "FLUX_FILL_DEV_1", "SANA",
    "HUNYUAN_VIDEO", "HI_DREAM_FULL", "CHROMA_1", "QWEN"), open=True)
DATA_TYPE = Enum("DataType", (
    "FLOAT_32", "FLOAT_16", "BFLOAT_16", "TFLOAT_32", "FLOAT_8", "INT_8", "NFLOAT_4", "NONE"), open=True)
MODEL_FORMAT = Enum("ModelFormat", (
    "SAFETENSORS", "DIFFUSERS", "CKPT", "LEGACY_SAFETENSORS", "ORIGINAL_SINGLE_FILE", "KOHYA_LORA",
    "DIFFUSERS_LORA", "COMFY_LORA", "INTERNAL"), open=True)
OPTIMIZER = Enum("Optimizer", (
    "ADAMW", "ADAMW_8BIT", "ADAM", "ADAM_8BIT", "ADAFACTOR", "CAME", "LION", "LION_8BIT", "PRODIGY",
    "SGD", "SGD_8BIT", "RMSPROP", "SCHEDULE_FREE_ADAMW", "DADAPT_ADAM", "ADOPT", "MUON"), open=True)
NOISE_SCHEDULER = Enum("NoiseScheduler", (
    "DDIM", "EULER", "EULER_A", "DPMPP", "DPMPP_SDE", "UNIPC", "EULER_KARRAS", "DPMPP_KARRAS",
    "DPMPP_SDE_KARRAS", "UNIPC_KARRAS"), open=True)
TIMESTEP_DISTRIBUTION = Enum("TimestepDistribution", (
    "UNIFORM", "SIGMOID", "LOGIT_NORMAL", "HEAVY_TAIL", "COS_MAP", "INVERTED_PARABOLA"), open=True)
LOSS_WEIGHT = Enum("LossWeight", ("CONSTANT", "P2", "MIN_SNR_GAMMA", "DEBIASED_ESTIMATION", "SIGMA"),
                   open=True)
GRADIENT_REDUCE_PRECISION = Enum("GradientReducePrecision", (
    "WEIGHT_DTYPE", "FLOAT_32", "WEIGHT_DTYPE_STOCHASTIC", "FLOAT_32_STOCHASTIC"), open=True)
CONFIG_PART = Enum("ConfigPart", ("NONE", "SETTINGS", "ALL"), open=True)
PEFT_TYPE = Enum("PeftType", ("LORA", "LOHA", "LOKR", "OFT_2"), open=True)
CONCEPT_TYPE = Enum("ConceptType", ("STANDARD", "VALIDATION", "PRIOR_PREDICTION"), open=True)
IMAGE_FORMAT = Enum("ImageFormat", ("PNG", "JPG"), open=True)

# which field holds which enum, per object (field names are OneTrainer's)
DTYPE_FIELDS = ("output_dtype", "train_dtype", "fallback_train_dtype", "lora_weight_dtype",
                "embedding_weight_dtype", "weight_dtype", "svd_dtype")
ENUM_FIELDS = {
    "TrainConfig": {
        "training_method": TRAINING_METHOD, "model_type": MODEL_TYPE,
        "learning_rate_scheduler": LR_SCHEDULER, "ema": EMA_MODE, "output_model_format": MODEL_FORMAT,
        "gradient_reduce_precision": GRADIENT_REDUCE_PRECISION, "include_train_config": CONFIG_PART,
        "timestep_distribution": TIMESTEP_DISTRIBUTION, "loss_weight_fn": LOSS_WEIGHT,
        "peft_type": PEFT_TYPE, "sample_image_format": IMAGE_FORMAT,
    },
    "OptimizerConfig": {"optimizer": OPTIMIZER},
    "ConceptConfig": {"type": CONCEPT_TYPE, "balancing_strategy": BALANCING_STRATEGY},
    "ConceptTextConfig": {"prompt_source": PROMPT_SOURCE},
    "SampleConfig": {"noise_scheduler": NOISE_SCHEDULER},
}


def enum_for(obj: str, name: str) -> Enum | None:
    if name.endswith("_unit"):
        return TIME_UNIT
    if name in DTYPE_FIELDS:
        return DATA_TYPE
    return ENUM_FIELDS.get(obj, {}).get(name)
