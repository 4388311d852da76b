"""Builds the _iam_client extension with CMake (the repository's own build: the same
sources, flags and -Werror as every other build) and installs it inside the iam_client
package. Needs cmake, a C compiler, pkg-config and the -dev packages the library builds
with (scripts/install-deps.sh); no network."""
import glob
import os
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        if not os.path.exists(os.path.join(ROOT, "include", "iamclient.h")):
            sys.exit("setup.py: the libiamclient sources are not beside python/ "
                     "(install from a checkout of the repository)")
        build_dir = os.path.join(os.path.abspath(self.build_temp), "cmake")
        os.makedirs(build_dir, exist_ok=True)
        subprocess.check_call([
            "cmake", "-S", ROOT, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release",
            "-DIAM_BUILD_TESTS=OFF", "-DIAM_BUILD_BENCH=OFF", "-DIAM_BUILD_PYTHON=ON",
            f"-DPython3_EXECUTABLE={sys.executable}",
        ])
        subprocess.check_call(["cmake", "--build", build_dir, "--target", "_iam_client",
                               "-j", str(os.cpu_count() or 1)])
        built = glob.glob(os.path.join(build_dir, "python", "iam_client", "_iam_client*.so"))
        if len(built) != 1:
            sys.exit(f"setup.py: expected one built _iam_client module, found {built}")
        dest = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copyfile(built[0], dest)


setup(
    packages=["iam_client"],
    ext_modules=[Extension("iam_client._iam_client", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
)
