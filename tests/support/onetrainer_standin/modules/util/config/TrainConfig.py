"""A few of TrainConfig's fields, loaded the way OneTrainer loads them: defaults, then the dict,
with old versions migrated. Unknown keys are ignored, except the stand-in's own switches."""
from modules.util.config.SampleConfig import SampleConfig

CURRENT_VERSION = 11
SWITCHES = {"standin_steps_per_epoch": 3, "standin_step_seconds": 0.05, "standin_fail_at_step": None,
            "standin_missing_module": None}


class TrainConfig:
    DEFAULTS = {"__version": CURRENT_VERSION, "model_type": "STABLE_DIFFUSION_15", "training_method": "FINE_TUNE",
                "base_model_name": "", "workspace_dir": "workspace/run", "cache_dir": "workspace-cache/run",
                "output_model_destination": "models/model.safetensors", "epochs": 100, "batch_size": 1,
                "sample_after": 10, "sample_after_unit": "MINUTE", "save_every": 0, "save_every_unit": "NEVER",
                "backup_before_save": True, "continue_last_backup": False,
                "concepts": None, "concept_file_name": "training_concepts/concepts.json",
                "samples": None, "sample_definition_file_name": "training_samples/samples.json", **SWITCHES}

    def __init__(self, values: dict):
        self.__dict__.update(values)

    @classmethod
    def default_values(cls):
        return cls(dict(cls.DEFAULTS))

    def from_dict(self, data: dict):
        data = self._migrate(dict(data))
        for key in self.DEFAULTS:
            if key in data:
                setattr(self, key, data[key])
        if self.samples is not None:
            self.samples = [SampleConfig.default_values().from_dict(item) for item in self.samples]
        return self

    @staticmethod
    def _migrate(data: dict) -> dict:
        if data.get("__version", 0) < 3 and "save_after" in data:  # an old name, as OneTrainer renamed it
            data["save_every"] = data.pop("save_after")
        data["__version"] = CURRENT_VERSION
        return data

    def to_dict(self) -> dict:
        return {key: getattr(self, key) for key in self.DEFAULTS}
