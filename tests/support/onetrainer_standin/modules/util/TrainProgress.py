class TrainProgress:
    def __init__(self, epoch: int = 0, epoch_step: int = 0, epoch_sample: int = 0, global_step: int = 0):
        self.epoch, self.epoch_step = epoch, epoch_step
        self.epoch_sample, self.global_step = epoch_sample, global_step

    def next_step(self, batch_size: int):
        self.epoch_step += 1
        self.epoch_sample += batch_size
        self.global_step += 1

    def next_epoch(self):
        self.epoch += 1
        self.epoch_step = self.epoch_sample = 0
