//! Accounts, devices and one-time codes.
//!
//! Codes are stored only as hashes, are single use, expire (invites after 7 days, pairing codes
//! after 10 minutes). Wrong codes never touch a user's real codes: guessers are slowed down by the
//! relay's back-off (`crate::guessing`) instead. The device list of each user is an append-only log of who enrolled and revoked whom.

use cloud3_engine::auth::OneTimeCode;
use cloud3_engine::ids::DeviceId;
use cloud3_engine::time::WallTime;
use cloud3_engine::wire::DeviceInfo;
use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use super::{
    CHUNKS, CLAIMS, CODES, DEVICE_LOG, DEVICES, DOC_LOG, REFS, REFS_INDEXED, RETENTION, SYNC_HEADS,
    Store, USAGE, USERS, decode, encode,
};
use crate::error::StoreError;

/// Invites expire after a week.
pub const INVITE_TTL_MS: i64 = 7 * 24 * 3600 * 1000;
/// Pairing codes expire after ten minutes.
pub const PAIRING_TTL_MS: i64 = 10 * 60 * 1000;
/// Why an enrolment was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnrolRefusal {
    /// No such code for this user (or no such user: the two are never told apart).
    #[error("wrong or used code")]
    WrongCode,
    /// The code is not even shaped like one.
    #[error("malformed code")]
    Malformed,
    /// The code was right but is past its expiry (it is used up now).
    #[error("the code has expired")]
    Expired,
    /// The device name is empty or too long.
    #[error("device name must be 1-64 bytes")]
    BadDeviceName,
    /// The device key belongs to an enrolled device already.
    #[error("this device key is enrolled already")]
    KeyEnrolled,
}

impl EnrolRefusal {
    /// Whether the refusal counts as a guess (the code did not match).
    pub fn is_guess(&self) -> bool {
        matches!(self, EnrolRefusal::WrongCode | EnrolRefusal::Malformed)
    }
}

/// A user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// When the account was made.
    pub created: WallTime,
}

/// A device of a user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// Its user.
    pub user: String,
    /// Its name.
    pub name: String,
    /// When it enrolled.
    pub enrolled: WallTime,
    /// Who issued its pairing code (none: the invite).
    pub enrolled_by: Option<DeviceId>,
    /// Whether it may only read.
    pub read_only: bool,
    /// When it was revoked.
    pub revoked: Option<WallTime>,
}

/// What a code enrols.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CodeKind {
    /// The account's first device.
    Invite,
    /// A further device.
    Pairing {
        /// Read-only device (the browser viewer).
        read_only: bool,
        /// The device that asked for the code.
        issued_by: DeviceId,
    },
}

/// A stored code (its hash is the key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRecord {
    /// The user it enrols into.
    pub user: String,
    /// Invite or pairing.
    pub kind: CodeKind,
    /// When it stops working.
    pub expires: WallTime,
}

/// An entry of a user's device log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceEvent {
    /// `device` enrolled, by `by` (none: the invite).
    Enrolled {
        /// The new device.
        device: DeviceId,
        /// Who issued its code.
        by: Option<DeviceId>,
        /// When.
        at: WallTime,
    },
    /// `device` was revoked by `by`.
    Revoked {
        /// The revoked device.
        device: DeviceId,
        /// Who revoked it.
        by: DeviceId,
        /// When.
        at: WallTime,
    },
}

/// The answer to a login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Known, not revoked.
    Ok {
        /// Whether it may only read.
        read_only: bool,
    },
    /// Unknown device, or a device of another user.
    Unknown,
    /// Revoked.
    Revoked,
}

/// Accepts 1-64 letters, digits, '-', '_' and '.' (not starting with '.').
pub fn validate_user_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::BadName(name.to_owned()))
    }
}

/// Users, devices and one-time codes.
pub trait Accounts {
    /// Creates a user; returns its one-time invite code.
    fn add_user(&self, name: &str, now: WallTime) -> Result<OneTimeCode, StoreError>;

    /// All users, by name.
    fn list_users(&self) -> Result<Vec<(String, UserRecord)>, StoreError>;

    /// Removes a user and everything of theirs (devices, codes, documents, chunks).
    fn remove_user(&self, name: &str) -> Result<Vec<DeviceId>, StoreError>;

    /// Enrols `device` into `user` with a code; the answer is whether it is read-only. A wrong
    /// code changes nothing.
    fn enrol(
        &self,
        user: &str,
        code: &str,
        device: DeviceId,
        name: &str,
        now: WallTime,
    ) -> Result<Result<bool, EnrolRefusal>, StoreError>;

    /// Whether `device` may log in as `user`.
    fn authenticate(&self, user: &str, device: DeviceId) -> Result<AuthOutcome, StoreError>;

    /// A device's record.
    fn device(&self, device: DeviceId) -> Result<Option<DeviceRecord>, StoreError>;

    /// A new pairing code for `user`, asked for by `by`.
    fn issue_pairing_code(
        &self,
        user: &str,
        by: DeviceId,
        read_only: bool,
        now: WallTime,
    ) -> Result<(OneTimeCode, WallTime), StoreError>;

    /// The user's devices (online flags are the caller's to fill).
    fn list_devices(&self, user: &str) -> Result<Vec<DeviceInfo>, StoreError>;

    /// Revokes `target` (a device of the same user), on behalf of `by`.
    fn revoke(
        &self,
        user: &str,
        by: DeviceId,
        target: DeviceId,
        now: WallTime,
    ) -> Result<(), StoreError>;

    /// The user's device log, oldest first.
    fn device_log(&self, user: &str) -> Result<Vec<DeviceEvent>, StoreError>;
}

impl Accounts for Store {
    fn add_user(&self, name: &str, now: WallTime) -> Result<OneTimeCode, StoreError> {
        validate_user_name(name)?;
        let code = new_code()?;
        let txn = self.db.begin_write().map_err(StoreError::db)?;
        {
            let mut users = txn.open_table(USERS).map_err(StoreError::db)?;
            if users.get(name).map_err(StoreError::db)?.is_some() {
                return Err(StoreError::UserExists(name.to_owned()));
            }
            users
                .insert(name, encode(&UserRecord { created: now })?.as_slice())
                .map_err(StoreError::db)?;
            let mut codes = txn.open_table(CODES).map_err(StoreError::db)?;
            let record = CodeRecord {
                user: name.to_owned(),
                kind: CodeKind::Invite,
                expires: WallTime(now.0 + INVITE_TTL_MS),
            };
            codes
                .insert(&code.hash(), encode(&record)?.as_slice())
                .map_err(StoreError::db)?;
        }
        txn.commit().map_err(StoreError::db)?;
        Ok(code)
    }

    fn list_users(&self) -> Result<Vec<(String, UserRecord)>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::db)?;
        let users = txn.open_table(USERS).map_err(StoreError::db)?;
        let mut list = Vec::new();
        for row in users.iter().map_err(StoreError::db)? {
            let (name, value) = row.map_err(StoreError::db)?;
            list.push((name.value().to_owned(), decode(value.value())?));
        }
        Ok(list)
    }

    fn remove_user(&self, name: &str) -> Result<Vec<DeviceId>, StoreError> {
        let txn = self.db.begin_write().map_err(StoreError::db)?;
        let mut removed = Vec::new();
        {
            let mut users = txn.open_table(USERS).map_err(StoreError::db)?;
            if users.remove(name).map_err(StoreError::db)?.is_none() {
                return Err(StoreError::NoUser(name.to_owned()));
            }
            let mut devices = txn.open_table(DEVICES).map_err(StoreError::db)?;
            let mut heads = txn.open_table(SYNC_HEADS).map_err(StoreError::db)?;
            let mine: Vec<[u8; 32]> = devices
                .iter()
                .map_err(StoreError::db)?
                .filter_map(|row| row.ok())
                .filter(|(_, v)| decode::<DeviceRecord>(v.value()).is_ok_and(|d| d.user == name))
                .map(|(k, _)| *k.value())
                .collect();
            for device in &mine {
                devices.remove(device).map_err(StoreError::db)?;
                heads
                    .retain_in((device, "")..=(device, "\u{10ffff}"), |_, _| false)
                    .map_err(StoreError::db)?;
                removed.push(DeviceId(*device));
            }
            let mut codes = txn.open_table(CODES).map_err(StoreError::db)?;
            codes
                .retain(|_, v| decode::<CodeRecord>(v).map_or(true, |c| c.user != name))
                .map_err(StoreError::db)?;
            txn.open_table(DEVICE_LOG)
                .map_err(StoreError::db)?
                .retain_in((name, 0)..=(name, u64::MAX), |_, _| false)
                .map_err(StoreError::db)?;
            txn.open_table(DOC_LOG)
                .map_err(StoreError::db)?
                .retain(|(user, _, _), _| user != name)
                .map_err(StoreError::db)?;
            txn.open_table(CHUNKS)
                .map_err(StoreError::db)?
                .retain_in((name, &[0u8; 32])..=(name, &[0xffu8; 32]), |_, _| false)
                .map_err(StoreError::db)?;
            txn.open_table(USAGE)
                .map_err(StoreError::db)?
                .remove(name)
                .map_err(StoreError::db)?;
            txn.open_table(REFS)
                .map_err(StoreError::db)?
                .retain_in((name, &[0u8; 32])..=(name, &[0xffu8; 32]), |_, _| false)
                .map_err(StoreError::db)?;
            txn.open_table(REFS_INDEXED)
                .map_err(StoreError::db)?
                .retain(|(user, _), _| user != name)
                .map_err(StoreError::db)?;
            txn.open_table(CLAIMS)
                .map_err(StoreError::db)?
                .retain_in((name, &[0u8; 32])..=(name, &[0xffu8; 32]), |_, _| false)
                .map_err(StoreError::db)?;
            txn.open_table(RETENTION)
                .map_err(StoreError::db)?
                .remove(name)
                .map_err(StoreError::db)?;
            txn.open_table(super::VERDICTS)
                .map_err(StoreError::db)?
                .retain_in((name, &[0u8; 32])..=(name, &[0xffu8; 32]), |_, _| false)
                .map_err(StoreError::db)?;
        }
        txn.commit().map_err(StoreError::db)?;
        // Chunk bytes go with the user's pack directory.
        self.packs
            .lock()
            .map_err(|_| StoreError::Corrupt("pack lock poisoned".into()))?
            .remove_user(name)?;
        Ok(removed)
    }

    fn enrol(
        &self,
        user: &str,
        code: &str,
        device: DeviceId,
        name: &str,
        now: WallTime,
    ) -> Result<Result<bool, EnrolRefusal>, StoreError> {
        let refused = |why: EnrolRefusal| Ok(Err(why));
        let Ok(code) = OneTimeCode::parse(code) else {
            return refused(EnrolRefusal::Malformed);
        };
        if name.is_empty() || name.len() > cloud3_engine::wire::limits::MAX_NAME_BYTES {
            return refused(EnrolRefusal::BadDeviceName);
        }
        let txn = self.db.begin_write().map_err(StoreError::db)?;
        let read_only;
        {
            let mut codes = txn.open_table(CODES).map_err(StoreError::db)?;
            let record: Option<CodeRecord> =
                match codes.get(&code.hash()).map_err(StoreError::db)? {
                    Some(value) => Some(decode(value.value())?),
                    None => None,
                };
            let Some(record) = record.filter(|r| r.user == user) else {
                return refused(EnrolRefusal::WrongCode);
            };
            codes.remove(&code.hash()).map_err(StoreError::db)?;
            if record.expires < now {
                drop(codes);
                txn.commit().map_err(StoreError::db)?;
                return refused(EnrolRefusal::Expired);
            }
            let mut devices = txn.open_table(DEVICES).map_err(StoreError::db)?;
            if devices.get(&device.0).map_err(StoreError::db)?.is_some() {
                return refused(EnrolRefusal::KeyEnrolled);
            }
            let (ro, by) = match record.kind {
                CodeKind::Invite => (false, None),
                CodeKind::Pairing {
                    read_only,
                    issued_by,
                } => (read_only, Some(issued_by)),
            };
            read_only = ro;
            let device_record = DeviceRecord {
                user: user.to_owned(),
                name: name.to_owned(),
                enrolled: now,
                enrolled_by: by,
                read_only,
                revoked: None,
            };
            devices
                .insert(&device.0, encode(&device_record)?.as_slice())
                .map_err(StoreError::db)?;
            append_log(
                &txn,
                user,
                &DeviceEvent::Enrolled {
                    device,
                    by,
                    at: now,
                },
            )?;
        }
        txn.commit().map_err(StoreError::db)?;
        Ok(Ok(read_only))
    }

    fn authenticate(&self, user: &str, device: DeviceId) -> Result<AuthOutcome, StoreError> {
        match self.device(device)? {
            Some(record) if record.user != user => Ok(AuthOutcome::Unknown),
            Some(record) if record.revoked.is_some() => Ok(AuthOutcome::Revoked),
            Some(record) => Ok(AuthOutcome::Ok {
                read_only: record.read_only,
            }),
            None => Ok(AuthOutcome::Unknown),
        }
    }

    fn device(&self, device: DeviceId) -> Result<Option<DeviceRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::db)?;
        let devices = txn.open_table(DEVICES).map_err(StoreError::db)?;
        match devices.get(&device.0).map_err(StoreError::db)? {
            Some(value) => Ok(Some(decode(value.value())?)),
            None => Ok(None),
        }
    }

    fn issue_pairing_code(
        &self,
        user: &str,
        by: DeviceId,
        read_only: bool,
        now: WallTime,
    ) -> Result<(OneTimeCode, WallTime), StoreError> {
        let code = new_code()?;
        let expires = WallTime(now.0 + PAIRING_TTL_MS);
        let txn = self.db.begin_write().map_err(StoreError::db)?;
        {
            check_active(&txn, user, by)?;
            let mut codes = txn.open_table(CODES).map_err(StoreError::db)?;
            let record = CodeRecord {
                user: user.to_owned(),
                kind: CodeKind::Pairing {
                    read_only,
                    issued_by: by,
                },
                expires,
            };
            codes
                .insert(&code.hash(), encode(&record)?.as_slice())
                .map_err(StoreError::db)?;
        }
        txn.commit().map_err(StoreError::db)?;
        Ok((code, expires))
    }

    fn list_devices(&self, user: &str) -> Result<Vec<DeviceInfo>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::db)?;
        let devices = txn.open_table(DEVICES).map_err(StoreError::db)?;
        let mut list = Vec::new();
        for row in devices.iter().map_err(StoreError::db)? {
            let (key, value) = row.map_err(StoreError::db)?;
            let record: DeviceRecord = decode(value.value())?;
            if record.user == user {
                list.push(DeviceInfo {
                    device: DeviceId(*key.value()),
                    name: record.name,
                    enrolled: record.enrolled,
                    enrolled_by: record.enrolled_by,
                    read_only: record.read_only,
                    revoked: record.revoked,
                    online: false,
                });
            }
        }
        list.sort_by_key(|d| d.enrolled);
        Ok(list)
    }

    fn revoke(
        &self,
        user: &str,
        by: DeviceId,
        target: DeviceId,
        now: WallTime,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(StoreError::db)?;
        {
            check_active(&txn, user, by)?;
            let mut devices = txn.open_table(DEVICES).map_err(StoreError::db)?;
            let mut record: DeviceRecord = match devices.get(&target.0).map_err(StoreError::db)? {
                Some(value) => decode(value.value())?,
                None => return Err(StoreError::Forbidden(target.short().to_string())),
            };
            if record.user != user {
                // Another user's device is not even acknowledged to exist.
                return Err(StoreError::Forbidden(target.short().to_string()));
            }
            if record.revoked.is_none() {
                record.revoked = Some(now);
                devices
                    .insert(&target.0, encode(&record)?.as_slice())
                    .map_err(StoreError::db)?;
                append_log(
                    &txn,
                    user,
                    &DeviceEvent::Revoked {
                        device: target,
                        by,
                        at: now,
                    },
                )?;
            }
        }
        txn.commit().map_err(StoreError::db)
    }

    fn device_log(&self, user: &str) -> Result<Vec<DeviceEvent>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::db)?;
        let log = txn.open_table(DEVICE_LOG).map_err(StoreError::db)?;
        let mut events = Vec::new();
        for row in log
            .range((user, 0)..=(user, u64::MAX))
            .map_err(StoreError::db)?
        {
            let (_, value) = row.map_err(StoreError::db)?;
            events.push(decode(value.value())?);
        }
        Ok(events)
    }
}

/// Inside a write transaction: `device` belongs to `user` and is not revoked. Every write on
/// behalf of a device checks this in the same transaction, so nothing from a revoked device
/// lands after its revocation commits.
pub(crate) fn check_active(
    txn: &redb::WriteTransaction,
    user: &str,
    device: DeviceId,
) -> Result<(), StoreError> {
    let devices = txn.open_table(DEVICES).map_err(StoreError::db)?;
    let record: DeviceRecord = match devices.get(&device.0).map_err(StoreError::db)? {
        Some(value) => decode(value.value())?,
        None => return Err(StoreError::Forbidden(device.short().to_string())),
    };
    if record.user != user || record.revoked.is_some() {
        return Err(StoreError::Forbidden(device.short().to_string()));
    }
    Ok(())
}

fn append_log(
    txn: &redb::WriteTransaction,
    user: &str,
    event: &DeviceEvent,
) -> Result<(), StoreError> {
    let mut log = txn.open_table(DEVICE_LOG).map_err(StoreError::db)?;
    let next = match log
        .range((user, 0)..=(user, u64::MAX))
        .map_err(StoreError::db)?
        .next_back()
    {
        Some(row) => row.map_err(StoreError::db)?.0.value().1 + 1,
        None => 0,
    };
    log.insert((user, next), encode(event)?.as_slice())
        .map_err(StoreError::db)?;
    Ok(())
}

fn new_code() -> Result<OneTimeCode, StoreError> {
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).map_err(|e| StoreError::Random(e.to_string()))?;
    Ok(OneTimeCode::generate(random))
}
