# The C module behind `signal`; roost imports it directly to skip building the enums.
from signal import *  # noqa: F403
