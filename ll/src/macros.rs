//! The constants and function-like macros of `rdkafka.h` that bindgen
//! cannot translate, written out by hand under their C names.

use crate::bindings::*;

/// Unassigned partition: let the partitioner choose
/// (`#define RD_KAFKA_PARTITION_UA ((int32_t)-1)`).
pub const RD_KAFKA_PARTITION_UA: i32 = -1;

/// Start consuming `count` messages from the end of the partition
/// (`#define RD_KAFKA_OFFSET_TAIL(CNT)`).
pub const fn RD_KAFKA_OFFSET_TAIL(count: i64) -> i64 {
    RD_KAFKA_OFFSET_TAIL_BASE - count
}

/// Kafka's newer name for [`RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION`].
pub const RD_KAFKA_RESP_ERR_NOT_LEADER_OR_FOLLOWER: rd_kafka_resp_err_t =
    RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION;

/// Kafka's older name for [`RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS`].
pub const RD_KAFKA_RESP_ERR_GROUP_LOAD_IN_PROGRESS: rd_kafka_resp_err_t =
    RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS;

/// Kafka's older name for [`RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE`].
pub const RD_KAFKA_RESP_ERR_GROUP_COORDINATOR_NOT_AVAILABLE: rd_kafka_resp_err_t =
    RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE;

/// Kafka's older name for [`RD_KAFKA_RESP_ERR_NOT_COORDINATOR`].
pub const RD_KAFKA_RESP_ERR_NOT_COORDINATOR_FOR_GROUP: rd_kafka_resp_err_t =
    RD_KAFKA_RESP_ERR_NOT_COORDINATOR;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_tail_counts_back_from_base() {
        assert_eq!(RD_KAFKA_OFFSET_TAIL(0), -2000);
        assert_eq!(RD_KAFKA_OFFSET_TAIL(5), -2005);
    }
}
