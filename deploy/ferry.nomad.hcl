# ferry on many boxes: N allocations, each copying the keys of its own shard
# (a stable hash of the key, so a key always lands in the same shard) into
# its own ledger on a host volume. Merge the shards' ledgers for sign-off:
#   ferry report --ledger shard-0/ferry.sqlite --ledger shard-1/ferry.sqlite …
#
# Each client needs a host volume "ferry-state" (client { host_volume "ferry-state" { path = "/var/lib/ferry" } })
# and the keys in Nomad Variables at nomad/jobs/ferry.
job "ferry" {
  type = "service"

  group "shards" {
    count = 4

    # One shard per box: they share nothing but the buckets.
    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    volume "state" {
      type   = "host"
      source = "ferry-state"
    }

    network {
      port "metrics" {
        static = 9898
      }
    }

    service {
      name     = "ferry-metrics"
      port     = "metrics"
      provider = "nomad"
      tags     = ["prometheus"]
    }

    restart {
      attempts = 10
      interval = "30m"
      delay    = "30s"
      mode     = "delay"
    }

    task "ferry" {
      driver = "exec"

      config {
        command = "/usr/local/bin/ferry"
        args = [
          "--config", "${NOMAD_TASK_DIR}/ferry.toml",
          "--shard", "${NOMAD_ALLOC_INDEX}/4",
          "--log-format", "json",
          "--metrics-addr", "0.0.0.0:${NOMAD_PORT_metrics}",
          "run",
        ]
      }

      volume_mount {
        volume      = "state"
        destination = "/state"
      }

      # First signal: finish in flight and exit; Nomad waits kill_timeout.
      kill_signal  = "SIGTERM"
      kill_timeout = "60s"

      template {
        destination = "secrets/keys.env"
        env         = true
        data        = <<EOT
{{ with nomadVar "nomad/jobs/ferry" }}
FERRY_DEST_ACCESS_KEY_ID={{ .dest_access_key_id }}
FERRY_DEST_SECRET_ACCESS_KEY={{ .dest_secret_access_key }}
AWS_ACCESS_KEY_ID={{ .aws_access_key_id }}
AWS_SECRET_ACCESS_KEY={{ .aws_secret_access_key }}
{{ end }}
EOT
      }

      template {
        destination = "local/ferry.toml"
        data        = <<EOT
# Each shard keeps its own ledger on the host volume.
ledger = "/state/shard-{{ env "NOMAD_ALLOC_INDEX" }}/ferry.sqlite"
interval = "15m"

[source]
region = "eu-central-1"

[destination]
endpoint = "https://fsn1.your-objectstorage.com"
region = "fsn1"
access_key_id_env = "FERRY_DEST_ACCESS_KEY_ID"
secret_access_key_env = "FERRY_DEST_SECRET_ACCESS_KEY"

[[buckets]]
source = "audio"
destination = "hub-audio"

[[buckets]]
source = "mediafiles"
destination = "hub-mediafiles"

[[buckets]]
source = "onix"
destination = "hub-onix"

[[buckets]]
source = "packages"
destination = "hub-packages"
EOT
      }

      resources {
        cpu    = 2000
        memory = 1024
      }
    }
  }
}
