"""The folder that ``nnUNet_extTrainer`` points at (see ``nnmsf env``).

nnU-Net imports every module in this folder under its bare file name. The folder therefore holds a
single, uniquely named module that only re-exports the trainers from their real modules, so the
classes nnU-Net finds keep their packaged ``__module__`` (picklable, identical objects).
"""
