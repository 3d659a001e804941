"""Analysis and presentation helpers: figure builders, attributions, embedding analysis.

Figure builders are pure functions (data in, ``plotly.graph_objects.Figure`` out) so they are unit
tested directly; the Streamlit pages only call them and draw.
"""
