from modules.util.enum.FileType import FileType


class ModelSamplerOutput:
    """What a sample callback receives: the file type and the data (a PIL image), no path."""

    def __init__(self, file_type: FileType, data):
        self.file_type, self.data = file_type, data
