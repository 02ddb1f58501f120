from citune.data.stream import build_stream, safe_task_name
from citune.types import Instance, Stream, Task

__all__ = ["Instance", "Stream", "Task", "build_stream", "safe_task_name"]
