//! The fields the input forms use, by index, and one field's value as the forms give it.

use std::borrow::Cow;

pub const SPECVERSION: usize = 0;
pub const TYPE: usize = 1;
pub const DATA: usize = 2;
pub const EVENT_TYPE: usize = 3;
pub const CHANNEL_UPPER: usize = 4;
pub const CHANNEL_LOWER: usize = 5;
/// The first of the eleven receipt fields of each spelling (worker.parsing.receipts.FieldNames
/// order: the seven SIDs, then status, error code and the two dates).
pub const PASCAL: usize = 6;
pub const SNAKE: usize = 17;
/// The Messaging status forms' own fields (the callback shares AccountSid, MessageSid and
/// ErrorCode with the webhook's PascalCase; Event Streams' data is camelCase).
pub const MESSAGE_STATUS: usize = 28;
pub const CAMEL_ACCOUNT: usize = 29;
pub const CAMEL_MESSAGE: usize = 30;
pub const CAMEL_STATUS: usize = 31;
pub const CAMEL_ERROR_CODE: usize = 32;
pub const CAMEL_DATE_UPDATED: usize = 33;
pub const CAMEL_TIMESTAMP: usize = 34;
pub const N_FIELDS: usize = 35;

pub const ACCOUNT: usize = 0;
pub const MESSAGE: usize = 3;
pub const RECEIPT: usize = 4;
pub const CHANNEL_MESSAGE: usize = 5;
pub const STATUS: usize = 7;
pub const ERROR_CODE: usize = 8;
pub const DATE_CREATED: usize = 9;
pub const DATE_UPDATED: usize = 10;

/// Which field a key names (a key the forms do not use: None).
pub fn field_index(key: &str) -> Option<usize> {
    Some(match key {
        "specversion" => SPECVERSION,
        "type" => TYPE,
        "data" => DATA,
        "EventType" => EVENT_TYPE,
        "Channel" => CHANNEL_UPPER,
        "channel" => CHANNEL_LOWER,
        "AccountSid" => PASCAL + ACCOUNT,
        "ChatServiceSid" => PASCAL + 1,
        "ConversationSid" => PASCAL + 2,
        "MessageSid" => PASCAL + MESSAGE,
        "DeliveryReceiptSid" => PASCAL + RECEIPT,
        "ChannelMessageSid" => PASCAL + CHANNEL_MESSAGE,
        "ParticipantSid" => PASCAL + 6,
        "Status" => PASCAL + STATUS,
        "ErrorCode" => PASCAL + ERROR_CODE,
        "DateCreated" => PASCAL + DATE_CREATED,
        "DateUpdated" => PASCAL + DATE_UPDATED,
        "account_sid" => SNAKE + ACCOUNT,
        "chat_service_sid" => SNAKE + 1,
        "conversation_sid" => SNAKE + 2,
        "message_sid" => SNAKE + MESSAGE,
        "sid" => SNAKE + RECEIPT,
        "channel_message_sid" => SNAKE + CHANNEL_MESSAGE,
        "participant_sid" => SNAKE + 6,
        "status" => SNAKE + STATUS,
        "error_code" => SNAKE + ERROR_CODE,
        "date_created" => SNAKE + DATE_CREATED,
        "date_updated" => SNAKE + DATE_UPDATED,
        "MessageStatus" => MESSAGE_STATUS,
        "accountSid" => CAMEL_ACCOUNT,
        "messageSid" => CAMEL_MESSAGE,
        "messageStatus" => CAMEL_STATUS,
        "errorCode" => CAMEL_ERROR_CODE,
        "dateUpdated" => CAMEL_DATE_UPDATED,
        "timestamp" => CAMEL_TIMESTAMP,
        _ => return None,
    })
}

/// A field's value: absent, JSON null, a string, or any other JSON value (its raw text).
pub enum Value<'a> {
    Absent,
    Null,
    Str(Cow<'a, str>),
    Other(&'a str),
}

/// A form's fields by index.
pub trait Fields<'a> {
    fn value(&self, index: usize) -> Value<'a>;
}
