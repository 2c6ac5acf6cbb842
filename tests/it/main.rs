//! The integration tests: one binary (one link of candle, subxt, rhai and hyper) with a
//! module per area and shared support (`support/`).

mod support;

mod api_openai;
mod chain_cli;
mod chain_processes;
mod chain_sim;
mod chain_weights_parity;
mod chain_yuma;
mod commit_reveal;
mod commit_reveal_python;
mod config_cli;
mod embed_model;
mod finetune_eval;
mod hostile;
mod inference_remote;
mod llm_bad_model;
mod llm_chat;
mod llm_export;
mod local_subnet;
mod models_resolve;
mod net_axon;
mod net_btauth;
mod net_epistula;
mod net_golden;
mod net_interop;
mod net_openai;
mod net_transport;
mod operator_cli;
mod prompt_cli;
mod replay;
mod score_parity;
mod score_relevance;
mod score_robustness;
mod script_cli;
mod script_ctx;
mod script_host;
mod script_llm;
mod script_tools;
mod subtensor_metadata;
mod subtensor_python;
mod subtensor_rpc;
mod subtensor_validator;
mod validator_robustness;
mod verified_inference;
mod wallet_interop;
