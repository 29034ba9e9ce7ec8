class SampleConfig:
    DEFAULTS = {"__version": 0, "enabled": True, "prompt": "", "negative_prompt": "", "height": 512,
                "width": 512, "seed": 42, "random_seed": False, "diffusion_steps": 20, "cfg_scale": 7.0,
                "noise_scheduler": "DDIM"}

    def __init__(self, values: dict):
        self.__dict__.update(values)

    @classmethod
    def default_values(cls):
        return cls(dict(cls.DEFAULTS))

    def from_dict(self, data: dict):
        for key in self.DEFAULTS:
            if key in data:
                setattr(self, key, data[key])
        return self

    def to_dict(self) -> dict:
        return {key: getattr(self, key) for key in self.DEFAULTS}
