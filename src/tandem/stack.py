"""What `tandem up` runs on one machine, and on which CPUs."""

from __future__ import annotations

from tandem.config import ModelServerSettings
from tandem.launcher import ServiceSpec, tandem_command
from tandem.model_server import cpu


def local_stack_specs(settings: ModelServerSettings) -> tuple[list[ServiceSpec], str]:
    """Both model-server roles as separate processes, each pinned to its own CPU set."""
    inference_cpus, indexing_cpus = cpu.split_for_roles(cpu.affinity())
    host = settings.bind_host
    inference = ServiceSpec(
        name="inference-model-server",
        argv=tandem_command("model-server", "--role", "inference"),
        env={"TANDEM_CPUS": cpu.format_cpu_list(inference_cpus)},
        ready_url=f"http://{host}:{settings.inference_port}/api/ready",
    )
    indexing = ServiceSpec(
        name="indexing-model-server",
        argv=tandem_command("model-server", "--role", "indexing"),
        env={"TANDEM_CPUS": cpu.format_cpu_list(indexing_cpus)},
        ready_url=f"http://{host}:{settings.indexing_port}/api/ready",
    )
    banner = (
        "Tandem is up:\n"
        f"  inference model server  http://{host}:{settings.inference_port}"
        f"  (CPUs {cpu.format_cpu_list(inference_cpus)})\n"
        f"  indexing model server   http://{host}:{settings.indexing_port}"
        f"  (CPUs {cpu.format_cpu_list(indexing_cpus)})\n"
        "Press Ctrl-C to stop."
    )
    return [inference, indexing], banner
