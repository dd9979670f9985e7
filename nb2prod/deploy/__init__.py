"""Deployment outputs of a build: the container image (`image`) and the cluster manifests
(`cluster_manifests`: Kubernetes Job, CronJob, sweep Job, Kubeflow component)."""
