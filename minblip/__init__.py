from .errors import MinblipError
from .ops import get_backend, set_backend
