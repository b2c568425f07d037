"""Stands in for get-pip.py when ansible-test bootstraps pip in its sanity virtualenvs.

ansible-test downloads get-pip.py from a host that test machines cannot reach; it first looks in its cache, where
run.sh puts this file. It installs pip with the interpreter's own ensurepip, then the packages ansible-test asks
for from the configured package index. ensurepip runs as a subprocess: called in-process it points PIP_CONFIG_FILE
at /dev/null and the system pip configuration (index, certificates) would be ignored.
"""

import subprocess
import sys

IGNORED = {"--no-setuptools", "--no-wheel"}

subprocess.run([sys.executable, "-m", "ensurepip", "--upgrade"], check=True, stdout=subprocess.DEVNULL)
arguments = [argument for argument in sys.argv[1:] if argument not in IGNORED]
subprocess.run([sys.executable, "-m", "pip", "install", *arguments], check=True)
