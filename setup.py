"""Puts ``fedc-tensorflow-startup.pth`` next to fedc in site-packages, for regular and editable installs.

Everything else about the package is in pyproject.toml. setuptools installs
``.pth`` files only as package data or through commands, so the build
commands below add it: ``build_py`` to the wheel's root (``pip install .``),
``editable_wheel`` to the editable wheel's root (``pip install -e .``).
What the file does: bootstrap/_fedc_tensorflow_startup.py.
"""

import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

PTH = "fedc-tensorflow-startup.pth"
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bootstrap", PTH)


class BuildPyWithPth(build_py):
    def run(self):
        super().run()
        self.copy_file(SOURCE, os.path.join(self.build_lib, PTH), preserve_mode=False)

    def get_outputs(self, include_bytecode=True):
        return [*super().get_outputs(include_bytecode), os.path.join(self.build_lib, PTH)]


class EditableWheelWithPth(editable_wheel):
    def _run_build_commands(self, dist_name, unpacked_wheel, build_lib, tmp_dir):
        # The editable wheel writes every file under ``unpacked_wheel`` into its root (site-packages).
        result = super()._run_build_commands(dist_name, unpacked_wheel, build_lib, tmp_dir)
        shutil.copyfile(SOURCE, os.path.join(unpacked_wheel, PTH))
        return result


setup(cmdclass={"build_py": BuildPyWithPth, "editable_wheel": EditableWheelWithPth})
