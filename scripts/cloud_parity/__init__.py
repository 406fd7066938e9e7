"""The cloud-mode run of Pulse (scripts/cloud-parity.sh): the deployment `terraform plan`
describes, stood up on loopback with Google's emulators and a stand-in for each piece of Google
Cloud the emulators lack (Cloud Run's front door and metadata server, Pub/Sub's push signing
and filters, Eventarc), then the `pulse demo` scenario run through it and counted.

Modules: plan (the resolved plan), identity (ID tokens), cloudrun (front door, container,
metadata server), pubsub, storage, bigquery (emulators and their gaps), eventarc, stack (all of
it started in order), scenario (the demo, its counts, the refusals)."""
