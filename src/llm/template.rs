//! Chat templates: the model's own Jinja `chat_template` rendered with minijinja (with
//! Python string-method compatibility), or a built-in ChatML / Zephyr / Llama-3 template
//! chosen from the vocabulary when the model ships none.

use minijinja::{Environment, ErrorKind, context};

use super::{ChatMessage, LlmError};

const CHATML: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
const ZEPHYR: &str = "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}{{ eos_token }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}";
const LLAMA3: &str = "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n{{ m.content | trim }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}";

/// A compiled chat template plus the special-token strings templates refer to.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
    /// Which template is in use (`model`, `chatml`, `zephyr`, `llama3`).
    pub kind: &'static str,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("kind", &self.kind)
            .finish()
    }
}

fn raise_exception(msg: String) -> Result<String, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
}

impl ChatTemplate {
    /// Compiles `source` (the model's template) or, when `None`, a built-in one chosen by
    /// which special tokens `has_token` reports in the vocabulary.
    pub fn new(
        source: Option<String>,
        bos: String,
        eos: String,
        has_token: impl Fn(&str) -> bool,
    ) -> Result<Self, LlmError> {
        let (kind, source) = match source {
            Some(s) => ("model", s),
            None if has_token("<|start_header_id|>") => ("llama3", LLAMA3.to_string()),
            None if has_token("<|assistant|>") => ("zephyr", ZEPHYR.to_string()),
            None => ("chatml", CHATML.to_string()),
        };
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_template_owned("chat", source)
            .map_err(|e| LlmError::Template(e.to_string()))?;
        Ok(Self {
            env,
            bos,
            eos,
            kind,
        })
    }

    /// Renders `messages` with the generation prompt appended.
    pub fn render(&self, messages: &[ChatMessage]) -> Result<String, LlmError> {
        let template = self
            .env
            .get_template("chat")
            .map_err(|e| LlmError::Template(e.to_string()))?;
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => true,
                bos_token => &self.bos,
                eos_token => &self.eos,
                date_string => "26 Jul 2024",
            })
            .map_err(|e| LlmError::Template(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs() -> Vec<ChatMessage> {
        vec![
            ChatMessage::new("system", "Be brief."),
            ChatMessage::new("user", "Hi"),
        ]
    }

    #[test]
    fn fallbacks_follow_the_vocabulary() {
        let t = ChatTemplate::new(None, "<s>".into(), "</s>".into(), |_| false).unwrap();
        assert_eq!(t.kind, "chatml");
        assert_eq!(
            t.render(&msgs()).unwrap(),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let t =
            ChatTemplate::new(None, "<s>".into(), "</s>".into(), |t| t == "<|assistant|>").unwrap();
        assert!(
            t.render(&msgs())
                .unwrap()
                .ends_with("<|user|>\nHi</s>\n<|assistant|>\n")
        );
        let t = ChatTemplate::new(None, "<|begin_of_text|>".into(), "<|eot_id|>".into(), |t| {
            t == "<|start_header_id|>"
        })
        .unwrap();
        assert!(
            t.render(&msgs())
                .unwrap()
                .starts_with("<|begin_of_text|><|start_header_id|>system")
        );
    }

    #[test]
    fn model_templates_get_python_methods_and_raise_exception() {
        let src = "{% if messages[0].role != 'system' %}{{ raise_exception('system first') }}{% endif %}{{ messages[1].content.strip().upper() }}";
        let t =
            ChatTemplate::new(Some(src.into()), String::new(), String::new(), |_| false).unwrap();
        assert_eq!(t.render(&msgs()).unwrap(), "HI");
        let err = t.render(&msgs()[1..]).unwrap_err();
        assert!(err.to_string().contains("system first"), "{err}");
    }

    #[test]
    fn broken_template_is_a_clear_error() {
        let err = ChatTemplate::new(
            Some("{% for %}".into()),
            String::new(),
            String::new(),
            |_| false,
        )
        .unwrap_err();
        assert!(matches!(err, LlmError::Template(_)), "{err}");
    }
}
