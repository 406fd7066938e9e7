"""The deployment as `terraform plan` resolves it: read from the plan's JSON, never repeated.

`tf-check terraform plan VARS OUT.json` (../shared/tools/terraform-offline) leaves what only
the cloud decides "known after apply": account emails, service URLs, topic ids, and everything
computed from them (a subscription's push endpoint and topic, the push identity in a function's
environment, the members granted run.invoker). To read those too, the plan is made twice:

1. the plan as tf-check writes it;
2. a Terraform state in which every planned resource exists, with the attributes the first plan
   gives it and the ones Google forms itself filled in the way Google forms them
   (`ACCOUNT_ID@PROJECT.iam.gserviceaccount.com`, `https://SERVICE-PROJECT_NUMBER.REGION.run.app`,
   `projects/P/topics/T`, see `google_formed`);
3. the plan again, by tf-check, against that state (`TF_CLI_ARGS_plan=-state=…`): Terraform then
   evaluates every expression, locals included, with those values, so nothing is left unknown
   and nothing is resolved by hand here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .procs import Failure

PROVIDER = 'provider["registry.terraform.io/hashicorp/google"]'


@dataclass
class Service:
    """A Cloud Run service: what runs, with which environment, and who may call it."""

    name: str
    region: str
    project: str
    url: str
    image: str
    service_account: str
    env: dict[str, str]
    secret_env: list[str]
    custom_audiences: list[str]
    timeout_seconds: int
    invokers: set[str] = field(default_factory=set)

    @property
    def binary(self) -> str:
        """The binary the image ships: `…/pulse-FUNCTION[:tag|@digest]` runs `FUNCTION`."""
        match = re.search(r"pulse-([a-z][a-z0-9-]*?)(?:[:@].*)?$", self.image)
        if not match:
            raise Failure(f"image {self.image!r} of {self.name} does not name a Pulse function")
        return match.group(1)

    @property
    def audiences(self) -> list[str]:
        """What Cloud Run accepts as `aud`: the service URL and the custom audiences."""
        return [self.url, *self.custom_audiences]


@dataclass
class Subscription:
    name: str
    topic: str
    filter: str
    push_endpoint: str | None
    oidc_audience: str | None
    oidc_service_account: str | None
    dead_letter_topic: str | None
    max_delivery_attempts: int | None
    ack_deadline_seconds: int | None
    retry_policy: dict | None


@dataclass
class Trigger:
    name: str
    location: str
    service_account: str
    criteria: dict[str, str]
    service: str
    path: str


@dataclass
class Table:
    dataset: str
    table_id: str
    schema: list | None
    time_partitioning: dict | None
    clustering: list | None
    view_query: str | None


@dataclass
class Deployment:
    project: str
    services: dict[str, Service]
    topics: list[str]
    subscriptions: list[Subscription]
    triggers: list[Trigger]
    buckets: dict[str, str]  # name -> location
    datasets: list[dict]
    tables: list[Table]

    def service_at(self, url: str) -> Service:
        """The service whose URL starts `url` (a push endpoint, an env value)."""
        for service in self.services.values():
            if url.rstrip("/") == service.url or url.startswith(service.url + "/"):
                return service
        raise KeyError(url)

    def service_by_binary(self, binary: str) -> Service:
        for service in self.services.values():
            if service.binary == binary:
                return service
        raise KeyError(binary)


def resolved_plan(repo: Path, tf_check: Path, tfvars: Path, work: Path) -> dict:
    """Plans twice (see the module's doc) and returns the second, fully known plan."""
    first = work / "plan.json"
    state = work / "google-formed.tfstate"
    second = work / "plan-resolved.json"
    tf_plan(repo, tf_check, tfvars, first)
    plan = json.loads(first.read_text())
    state.write_text(json.dumps(google_formed_state(plan), indent=1))
    tf_plan(repo, tf_check, tfvars, second, state=state)
    resolved = json.loads(second.read_text())
    unknown = [rc["address"] for rc in managed(resolved) if has_unknown(rc["change"]["after_unknown"])]
    if unknown:
        raise Failure(f"the resolved plan still has values known only after apply: {unknown}")
    return resolved


def tf_plan(repo: Path, tf_check: Path, tfvars: Path, out: Path, state: Path | None = None) -> None:
    env = dict(os.environ)
    if state is not None:
        # tf-check plans in a fresh copy with a local backend; -state points it at our state.
        env["TF_CLI_ARGS_plan"] = f"-state={state}"
    subprocess.run(
        ["bash", str(tf_check), "terraform", "plan", str(tfvars), str(out)],
        cwd=repo, env=env, check=True,
    )


def managed(plan: dict) -> list[dict]:
    return [rc for rc in plan["resource_changes"] if rc["mode"] == "managed"]


def has_unknown(value) -> bool:
    if value is True:
        return True
    if isinstance(value, dict):
        return any(has_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(has_unknown(v) for v in value)
    return False


def project_number(plan: dict) -> str:
    """The project's number, as the plan read it (the google_project data source)."""

    def resources(module):
        yield from module.get("resources", [])
        for child in module.get("child_modules", []):
            yield from resources(child)

    root = plan.get("prior_state", {}).get("values", {}).get("root_module", {})
    for resource in resources(root):
        if resource["type"] == "google_project" and resource["values"].get("number"):
            return str(resource["values"]["number"])
    raise Failure("the plan reads no google_project data source: the project number is unknown")


def google_formed(rtype: str, attrs: dict, number: str) -> dict:
    """The attributes Google forms itself when it creates a resource of type `rtype`."""
    project = attrs.get("project")
    formed: dict = {}
    if rtype == "google_service_account":
        email = f"{attrs['account_id']}@{project}.iam.gserviceaccount.com"
        path = f"projects/{project}/serviceAccounts/{email}"
        formed = {"email": email, "member": f"serviceAccount:{email}", "name": path, "id": path}
    elif rtype == "google_cloud_run_v2_service":
        # The deterministic URL form: https://SERVICE-PROJECT_NUMBER.REGION.run.app
        url = f"https://{attrs['name']}-{number}.{attrs['location']}.run.app"
        formed = {"uri": url, "urls": [url],
                  "id": f"projects/{project}/locations/{attrs['location']}/services/{attrs['name']}"}
    elif rtype == "google_pubsub_topic":
        formed = {"id": f"projects/{project}/topics/{attrs['name']}"}
    elif rtype == "google_pubsub_subscription":
        formed = {"id": f"projects/{project}/subscriptions/{attrs['name']}"}
    elif rtype == "google_storage_bucket":
        formed = {"id": attrs["name"], "url": f"gs://{attrs['name']}"}
    elif rtype == "google_bigquery_dataset":
        formed = {"id": f"projects/{project}/datasets/{attrs['dataset_id']}"}
    elif rtype == "google_bigquery_table":
        formed = {"id": f"projects/{project}/datasets/{attrs['dataset_id']}/tables/{attrs['table_id']}"}
    formed.setdefault("id", attrs.get("id") or f"{rtype}/{attrs.get('name', 'formed')}")
    return {**attrs, **{k: v for k, v in formed.items() if attrs.get(k) is None}}


def google_formed_state(plan: dict) -> dict:
    """A state holding every planned resource as Google would have created it."""
    number = project_number(plan)
    grouped: dict[tuple, list] = {}
    for rc in managed(plan):
        instance = {
            "schema_version": 0,
            "attributes": google_formed(rc["type"], dict(rc["change"]["after"]), number),
            "sensitive_attributes": [],
        }
        if "index" in rc:
            instance["index_key"] = rc["index"]
        grouped.setdefault((rc.get("module_address"), rc["type"], rc["name"]), []).append(instance)
    resources = []
    for (module, rtype, name), instances in grouped.items():
        resource = {"mode": "managed", "type": rtype, "name": name, "provider": PROVIDER,
                    "instances": instances}
        if module:
            resource["module"] = module
        resources.append(resource)
    return {"version": 4, "terraform_version": plan["terraform_version"], "serial": 1,
            "lineage": str(uuid.uuid4()), "outputs": {}, "resources": resources}


def one(items: list | None) -> dict:
    """The single nested block of a list (Terraform renders blocks as lists)."""
    return (items or [{}])[0] or {}


def deployment(plan: dict) -> Deployment:
    """The parts of the resolved plan a cloud-mode run stands up."""
    by_type: dict[str, list[dict]] = {}
    for rc in managed(plan):
        by_type.setdefault(rc["type"], []).append(rc["change"]["after"])
    services = {}
    for s in by_type.get("google_cloud_run_v2_service", []):
        template = one(s["template"])
        container = one(template["containers"])
        env = {e["name"]: e["value"] for e in container.get("env") or [] if not e.get("value_source")}
        secret = [e["name"] for e in container.get("env") or [] if e.get("value_source")]
        services[s["name"]] = Service(
            name=s["name"], region=s["location"], project=s["project"], url=s["uri"],
            image=container["image"], service_account=template["service_account"], env=env,
            secret_env=secret, custom_audiences=list(s.get("custom_audiences") or []),
            timeout_seconds=int(str(template.get("timeout") or "300s").rstrip("s")),
        )
    for binding in by_type.get("google_cloud_run_v2_service_iam_member", []):
        if binding["role"] == "roles/run.invoker" and binding["name"] in services:
            services[binding["name"]].invokers.add(binding["member"])
    subscriptions = []
    for s in by_type.get("google_pubsub_subscription", []):
        push = one(s.get("push_config"))
        oidc = one(push.get("oidc_token"))
        dead = one(s.get("dead_letter_policy"))
        subscriptions.append(Subscription(
            name=s["name"], topic=s["topic"], filter=s.get("filter") or "",
            push_endpoint=push.get("push_endpoint"), oidc_audience=oidc.get("audience"),
            oidc_service_account=oidc.get("service_account_email"),
            dead_letter_topic=dead.get("dead_letter_topic"),
            max_delivery_attempts=dead.get("max_delivery_attempts"),
            ack_deadline_seconds=s.get("ack_deadline_seconds"),
            retry_policy=one(s.get("retry_policy")) or None,
        ))
    triggers = []
    for t in by_type.get("google_eventarc_trigger", []):
        destination = one(one(t["destination"]).get("cloud_run_service"))
        triggers.append(Trigger(
            name=t["name"], location=t["location"], service_account=t["service_account"],
            criteria={c["attribute"]: c["value"] for c in t["matching_criteria"]},
            service=destination["service"], path=destination.get("path") or "/",
        ))
    tables = []
    for t in by_type.get("google_bigquery_table", []):
        view = one(t.get("view"))
        tables.append(Table(
            dataset=t["dataset_id"], table_id=t["table_id"],
            schema=json.loads(t["schema"]) if t.get("schema") else None,
            time_partitioning=one(t.get("time_partitioning")) or None,
            clustering=t.get("clustering"), view_query=view.get("query"),
        ))
    projects = {s.project for s in services.values()}
    if len(projects) != 1:
        raise Failure(f"expected one project in the plan, found {sorted(projects)}")
    return Deployment(
        project=projects.pop(), services=services,
        topics=[t["id"] for t in by_type.get("google_pubsub_topic", [])],
        subscriptions=subscriptions, triggers=triggers,
        buckets={b["name"]: b["location"] for b in by_type.get("google_storage_bucket", [])},
        datasets=[{"dataset_id": d["dataset_id"], "location": d.get("location")}
                  for d in by_type.get("google_bigquery_dataset", [])],
        tables=tables,
    )
