"""The service's components, and `Annotated` dependency aliases that hand them to routes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from shim.desks.helpdesks import Connector
from shim.desks.history_import import HistoryImports
from shim.desks.outbox import Outbox
from shim.jobs.classify_jobs import ClassifyJobs
from shim.jobs.retrain import RetrainPolicy
from shim.jobs.runner import JobRunner
from shim.metrics import ApiMetrics
from shim.quality.monitoring import Monitoring
from shim.serving.classifier import Classifier
from shim.serving.supervisor import Supervisor
from shim.serving.versions import ModelVersions
from shim.settings import Settings
from shim.store.feedback import Feedback
from shim.store.registry import Store


@dataclass
class Services:
    """Everything one app instance uses; built by `create_app`, kept on `app.state`."""

    settings: Settings
    api_key: str | None
    store: Store
    runner: JobRunner
    versions: ModelVersions
    classifier: Classifier
    feedback: Feedback
    monitoring: Monitoring
    retrain: RetrainPolicy
    metrics: ApiMetrics
    connectors: dict[str, Connector]
    outbox: Outbox
    imports: HistoryImports
    classify_jobs: ClassifyJobs
    supervisor: Supervisor | None = None


def get_services(request: Request) -> Services:
    return request.app.state.services


def get_settings(request: Request) -> Settings:
    return get_services(request).settings


def get_store(request: Request) -> Store:
    return get_services(request).store


def get_runner(request: Request) -> JobRunner:
    return get_services(request).runner


def get_versions(request: Request) -> ModelVersions:
    return get_services(request).versions


def get_classifier(request: Request) -> Classifier:
    return get_services(request).classifier


def get_feedback(request: Request) -> Feedback:
    return get_services(request).feedback


def get_monitoring(request: Request) -> Monitoring:
    return get_services(request).monitoring


def get_retrain(request: Request) -> RetrainPolicy:
    return get_services(request).retrain


def get_classify_jobs(request: Request) -> ClassifyJobs:
    return get_services(request).classify_jobs


ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
RunnerDep = Annotated[JobRunner, Depends(get_runner)]
VersionsDep = Annotated[ModelVersions, Depends(get_versions)]
ClassifierDep = Annotated[Classifier, Depends(get_classifier)]
FeedbackDep = Annotated[Feedback, Depends(get_feedback)]
MonitoringDep = Annotated[Monitoring, Depends(get_monitoring)]
RetrainDep = Annotated[RetrainPolicy, Depends(get_retrain)]
ClassifyJobsDep = Annotated[ClassifyJobs, Depends(get_classify_jobs)]
