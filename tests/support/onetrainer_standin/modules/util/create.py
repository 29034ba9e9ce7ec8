from modules.trainer.GenericTrainer import GenericTrainer


def create_trainer(config, callbacks, commands, reattach: bool = False):
    return GenericTrainer(config, callbacks, commands)
