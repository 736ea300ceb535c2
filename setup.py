"""Build hook only (the metadata is in pyproject.toml): the wheel leaves out test modules, such as
scenarios/test_scenarios.py, which setuptools would otherwise ship with their package."""

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithoutTests(build_py):
    def find_package_modules(self, package: str, package_dir: str) -> list[tuple[str, str, str]]:
        modules = super().find_package_modules(package, package_dir)
        return [m for m in modules if not m[1].startswith(("test_", "conftest"))]


setup(cmdclass={"build_py": BuildPyWithoutTests})
