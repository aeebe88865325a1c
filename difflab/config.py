"""The configuration, under the name earlier versions gave it (`dl.config.*`): the schema and reading
(`difflab.app.config`), the sections the kinds declare (`difflab.app.kinds`) and the builders
(`difflab.app.build`)."""

from .app.build import (TOY_RANGE, build_categorical_path, build_classifier, build_data, build_model, build_path, build_source,
                        build_time_sampler, build_token_network, data_record, source_sample)
from .app.config import (LR_DECAYS, MODEL_KINDS, PATHS, PRESETS_DIR, Config, DataConfig, DiffusionConfig, ModelConfig,
                         SampleConfig, TrainConfig, apply_overrides, load_config, preset_names, resolve_config_file)
from .app.kinds.autoencoder import AutoencoderConfig
from .app.kinds.cascade import CascadeConfig
from .app.kinds.discrete import DISCRETE_PATHS, DiscreteConfig

__all__ = ["Config", "DataConfig", "ModelConfig", "DiffusionConfig", "TrainConfig", "SampleConfig", "DiscreteConfig",
           "AutoencoderConfig", "CascadeConfig", "load_config", "apply_overrides", "preset_names", "resolve_config_file",
           "PRESETS_DIR", "PATHS", "LR_DECAYS", "MODEL_KINDS", "DISCRETE_PATHS", "TOY_RANGE", "build_path", "build_time_sampler",
           "build_source", "build_data", "build_model", "build_classifier", "build_categorical_path", "build_token_network",
           "data_record", "source_sample"]
