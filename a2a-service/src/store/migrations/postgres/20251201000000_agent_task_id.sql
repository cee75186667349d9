-- The downstream agent's own id for a task, so a follow-up message to a
-- task waiting for input reaches the same task at the agent.
ALTER TABLE a2a_tasks ADD COLUMN agent_task_id TEXT;
