//! A shop: `payments` takes payments and announces them, `wallet` credits every announced
//! payment to its account and tells balances.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use lymph::{Context, Error, Event, Result};
use serde::{Deserialize, Serialize};

/// The event `payments.pay` emits and `wallet` consumes.
pub const PAYMENT_ACCEPTED: &str = "payment.accepted";

/// The body of a [`PAYMENT_ACCEPTED`] event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// The account paid into.
    pub account: String,
    /// The amount, in cents.
    pub amount: i64,
}

/// Takes payments.
#[derive(Debug, Clone, Default)]
pub struct Payments;

#[lymph::interface(name = "payments")]
impl Payments {
    /// Accepts a payment of `amount` cents into `account` and announces it.
    #[rpc(raises = [ValueError])]
    async fn pay(&self, ctx: &Context, account: String, amount: i64) -> Result<()> {
        if amount <= 0 {
            return Err(Error::raise("ValueError", format!("amount must be positive, not {amount}")));
        }
        ctx.emit(PAYMENT_ACCEPTED, &Payment { account, amount }).await
    }
}

/// Keeps balances, in memory: clones share them.
#[derive(Debug, Clone, Default)]
pub struct Wallet {
    balances: Arc<Mutex<BTreeMap<String, i64>>>,
}

#[lymph::interface(name = "wallet")]
impl Wallet {
    /// The balance of `account`, 0 for an account never paid into.
    #[rpc]
    async fn balance(&self, account: String) -> Result<i64> {
        Ok(self.balances.lock().expect("balances").get(&account).copied().unwrap_or(0))
    }

    /// Credits an accepted payment; redelivered up to three times if it fails.
    #[event("payment.accepted", retry = 3)]
    async fn on_payment(&self, event: Event) -> Result<()> {
        let payment: Payment = event.body_as()?;
        tracing::info!(account = %payment.account, amount = payment.amount, "credited");
        *self.balances.lock().expect("balances").entry(payment.account).or_default() += payment.amount;
        Ok(())
    }
}
