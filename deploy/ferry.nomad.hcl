# ferry on many boxes: `shards` allocations, each copying the keys of its own
# shard (a stable hash of the key, so a key always lands in the same shard)
# into its own ledger. Merge the shards' ledgers for sign-off:
#   ferry report --ledger shard-0-of-4.sqlite --ledger shard-1-of-4.sqlite …
# (each copied out of its allocation with `nomad alloc fs ID alloc/data/…`).
#
# The keys live in Nomad Variables at nomad/jobs/ferry. Run it with
#   nomad job run -var shards=4 deploy/ferry.nomad.hcl
#
# Where the ledger lives, and what a reschedule does to it:
# - Each allocation keeps its ledger in its own alloc dir (alloc/data), on a
#   sticky, migrating ephemeral disk. A restart keeps it in place; a job
#   update or a reschedule places the allocation on the same client when it
#   can, and otherwise copies alloc/data from the old client to the new one
#   before ferry starts. The ledger's file name carries the shard, so a
#   shard never opens another's.
# - A lost client (dead disk, gone box) cannot hand its alloc/data over: the
#   replacement starts with no ledger. `run --restore-missing-ledger` then
#   brings back the shard's newest snapshot from the [backup] bucket (each
#   shard's under shard-I-of-N/) before the first pass, and adopts the copies
#   made since, which it proves at the destination, instead of sending them
#   again (see "Losing the box" in the README). With no snapshot yet, it
#   starts a new ledger and adopts everything it can prove.
# - Changing `shards` re-cuts every shard: the ledger names change with it
#   (ferry refuses, with exit 2, a ledger recorded under another shard), so
#   each allocation starts a new ledger and adopts what is already there.

variable "shards" {
  type        = number
  default     = 4
  description = "How many allocations share the keys; each takes shard NOMAD_ALLOC_INDEX of this many."
}

job "ferry" {
  type = "service"

  group "shards" {
    count = var.shards

    # One shard per box: they share nothing but the buckets.
    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    # The ledger's disk follows the allocation (see the top of this file).
    ephemeral_disk {
      sticky  = true
      migrate = true
      size    = 10240
    }

    network {
      # Nomad picks the port; Prometheus finds it through the service.
      port "metrics" {}
    }

    service {
      name     = "ferry-metrics"
      port     = "metrics"
      provider = "nomad"
      tags     = ["prometheus"]
    }

    # Exit 2 is a config or usage error (a missing key, a ledger of another
    # shard): three failed starts in 30 minutes fail the allocation instead
    # of restarting it forever; a fixed job (nomad job run) starts it again.
    restart {
      attempts = 3
      interval = "30m"
      delay    = "30s"
      mode     = "fail"
    }

    # A failed allocation is tried on another client twice a day at most.
    # (An allocation on a lost client is replaced whatever this says.)
    reschedule {
      attempts       = 2
      interval       = "24h"
      delay          = "5m"
      delay_function = "constant"
      unlimited      = false
    }

    task "ferry" {
      driver = "exec"

      config {
        command = "/usr/local/bin/ferry"
        args = [
          "--config", "${NOMAD_TASK_DIR}/ferry.toml",
          "--shard", "${NOMAD_ALLOC_INDEX}/${var.shards}",
          "--log-format", "json",
          "--metrics-addr", "${NOMAD_IP_metrics}:${NOMAD_PORT_metrics}",
          "run",
          "--restore-missing-ledger",
        ]
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
# Each shard keeps its own ledger in the allocation's sticky disk.
ledger = "{{ env "NOMAD_ALLOC_DIR" }}/data/shard-{{ env "NOMAD_ALLOC_INDEX" }}-of-${var.shards}.sqlite"
interval = "15m"

# A snapshot of the ledger every hour, in a bucket of its own at the
# destination: what a replacement allocation restores.
[backup]
bucket = "ferry-ledger"

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
