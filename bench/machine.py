"""What the machine is: its usable cores, a device barrier for timing, and the environment record
that goes into every summary (what could make another run of the same config differ)."""
import os
import platform


def cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def sync(device) -> None:
    """Wait for the device's queued work: CUDA runs asynchronously, so a clock read needs this first."""
    import torch  # not at import time: `cores()` serves code that runs before torch is loaded

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def slurm_job() -> str | None:
    """The SLURM job this process runs in, as squeue and scontrol name it ('12_3' for task 3 of job
    array 12, '57' for a plain job), or None outside SLURM."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")


def environment(device) -> dict:
    import torch

    env = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device),
           "threads": torch.get_num_threads(), "cores": cores(), "platform": platform.platform(),
           "processor": platform.processor() or platform.machine(), "slurm_job": slurm_job()}
    # what could make another run of the same config differ from this one
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
        env["nondeterminism"] = ("CUDA: cuBLAS/cuDNN kernel selection and atomic adds may change the last "
                                 "bits between runs, GPUs and driver versions")
    else:
        env["device_name"] = env["processor"]
        # torch's CPU kernels are chosen by instruction set (AVX2, AVX-512, ...; ATEN_CPU_CAPABILITY
        # forces one): each rounds float32 sums differently, and a long or unstable run turns the last
        # bits into different numbers (README, Guarantees)
        env["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        env["nondeterminism"] = (f"none on {device.type} with the same torch version, thread count and "
                                 f"cpu_capability ({env['cpu_capability']}): bitwise repeatable; another "
                                 "torch version, thread count or instruction set changes the last bits, "
                                 "which a long or unstable run can grow into other figures")
    return env
